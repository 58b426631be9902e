package ostree

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// repoLock is ostree's repo/.lock protocol: a whole-file OFD lock, shared
// (F_RDLCK) while objects are written and exclusive while pruning, with
// flock as the fallback on kernels without OFD locks.
type repoLock struct {
	fd      int // -1 when locking is disabled by config
	isFlock bool
}

func acquireSharedLock(dirFD int, timeoutSecs int) (*repoLock, error) {
	fd, err := unix.Openat(dirFD, ".lock", unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o660)
	if err != nil {
		return nil, fmt.Errorf("opening .lock: %w", err)
	}
	deadline := time.Now().Add(time.Duration(timeoutSecs) * time.Second)
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: 0, Len: 0}
	useFlock := false
	for {
		if !useFlock {
			err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
			if errors.Is(err, unix.EINVAL) {
				useFlock = true
				continue
			}
		} else {
			err = unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB)
		}
		if err == nil {
			return &repoLock{fd: fd, isFlock: useFlock}, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EWOULDBLOCK) {
			unix.Close(fd)
			return nil, fmt.Errorf("locking .lock: %w", err)
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("locking .lock: repository is locked exclusively by another process (waited %ds)", timeoutSecs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *repoLock) release() error {
	if l.fd < 0 {
		return nil
	}
	// Closing the only descriptor drops an OFD lock or flock alike.
	return unix.Close(l.fd)
}
