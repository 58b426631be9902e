package cliutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// listPipeSize is the buffer asked for a pipe that carries an object list.
// A 64 KiB pipe holds about 150 lines, so a stage writing a batch of a
// thousand entries stalls until the next stage has read most of them; with
// 1 MiB (the default pipe-max-size, allowed to any user) the stages overlap.
const listPipeSize = 1 << 20

// growListPipe gives f, when it is a pipe, a buffer of listPipeSize. Both
// ends of a pipe share one buffer, so either stage can do it. It is only a
// speed-up: a kernel or a per-user limit that refuses changes nothing else.
func growListPipe(f *os.File) {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return
	}
	if size, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0); err == nil && size >= listPipeSize {
		return
	}
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, listPipeSize)
}
