package pull

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Decompressor choices for gzip layers (Options.Decompressor); anything
// else names a program that inflates like `gzip -dc`.
const (
	// DecompressDefault ("" too) is DecompressAuto for a blob that is a
	// regular file (oci:, oci-archive:, dir:), which the program reads
	// itself, and in process for any other (a registry's stream), whose
	// bytes would cross a pipe twice and whose second fetch, when the
	// program refuses a blob of several members, costs the network. On
	// the benchmark image the file path takes about 7 s less CPU and
	// 3-5 s less wall time than in process (docs/performance.md).
	DecompressDefault = "default"
	// DecompressAuto inflates with igzip (ISA-L), else pigz, when one is
	// on PATH, else in process.
	DecompressAuto = "auto"
	// DecompressBuiltin inflates in process (klauspost/pgzip, as
	// containers/image does): a blob of several members (eStargz) is not
	// inflated twice.
	DecompressBuiltin = "builtin"
)

// autoInflaters are what DecompressAuto looks for, fastest first. On a
// 429 MB layer of the benchmark image (user+sys CPU, warm cache): igzip
// 1.2 s, pigz 2.3 s, the in-process inflater 2.9 s. Inflating is the
// longest single chain of a pull (one stream per layer), so its speed is
// the pull's wall time as much as its CPU.
var autoInflaters = []string{"igzip", "pigz"}

// ResolveDecompressor turns an Options.Decompressor into the program that
// inflates gzip layers, "" meaning in process.
func ResolveDecompressor(choice string) (string, error) {
	switch choice {
	case "", DecompressDefault, DecompressAuto:
		for _, name := range autoInflaters {
			if p, err := exec.LookPath(name); err == nil {
				return p, nil
			}
		}
		return "", nil
	case DecompressBuiltin:
		return "", nil
	}
	p, err := exec.LookPath(choice)
	if err != nil {
		return "", fmt.Errorf("decompressor %q: %w", choice, err)
	}
	return filepath.Abs(p)
}

// inflaterPipeSize is asked of both pipes: fewer, larger reads and
// writes, and fewer wake-ups of either side, than the default 64 KiB.
const inflaterPipeSize = 1 << 20

// inflater runs an external gzip decompressor (`PROG -dc`) over one
// blob: a goroutine feeds it the blob, its output is read ahead on
// another (with its CRC-32 and length), and Read hands that output on.
// When the blob is a regular file (an oci: layout, dir:), the program
// reads that file itself as its stdin, and the goroutine only reads the
// blob for its digest (from the page cache, whichever of the two reads
// a block first): the blob then never passes through a pipe, which cost
// a copy into the pipe and one out of it for every compressed byte.
//
// The end of the output is only reported once everything checks out:
// the blob was read to its end (the source checks its digest there), the
// program exited 0, and the blob ends with the gzip trailer of one member
// holding all the output. The in-process decompressor accepts exactly the
// gzip streams that are one or more members with nothing after the last;
// igzip and pigz also accept trailing bytes (zeros, garbage) and stop at
// them. So when the program fails, or the blob is not one such member
// (several members, trailing bytes), the inflater refuses the layer
// rather than deciding, and the caller lets the in-process decompressor
// decide: it gives the same answer for every blob it accepts and its own
// error for every other. (A blob crafted to end with bytes that happen
// to be the trailer of all the output before them is accepted here where
// the in-process decompressor refuses it; its content is still checked
// against the blob digest and the diff ID.)
type inflater struct {
	prog   string
	cmd    *exec.Cmd
	stdin  *os.File // write end, the feeder's; nil when the program reads file
	file   *os.File // the program's stdin when it is the blob's file
	out    *readAhead
	sum    *crcReader
	stderr *headBuffer

	fed     chan struct{} // closed when the feeder has returned
	feedErr error         // the source's error, set before fed is closed
	unread  bool          // the program stopped reading before the end
	tail    [8]byte       // the blob's last 8 bytes
	tailN   int64

	closeSrc func() // stops a read of the source the feeder may be in
	killed   bool
	waitOnce sync.Once
	waitErr  error
	refused  error // why the caller must let the in-process decompressor decide
	once     sync.Once
}

// errRefused marks an inflater's refusal in what Read returns.
var errRefused = errors.New("the external decompressor did not decide")

// startInflater starts prog -dc reading src. closeSrc must make a read of
// src in progress return (the caller still closes src itself). file, if
// not nil, is the regular file src reads the blob from (from its start):
// the program then reads it on a descriptor of its own, and src is read
// only for its checks.
func startInflater(prog string, src io.Reader, file *os.File, closeSrc func()) (*inflater, error) {
	in := &inflater{prog: prog, stderr: &headBuffer{max: 1024}, fed: make(chan struct{}), closeSrc: closeSrc}
	var inR *os.File
	if file != nil {
		// A description of its own, at offset 0 whatever src has read:
		// a dup would share src's offset.
		f, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(file.Fd())))
		if err == nil {
			in.file = f
		}
	}
	if in.file == nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		inR, in.stdin = r, w
		// Best effort: a smaller pipe only costs more wake-ups.
		unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, inflaterPipeSize)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		in.closeStdin(inR)
		return nil, err
	}
	unix.FcntlInt(outW.Fd(), unix.F_SETPIPE_SZ, inflaterPipeSize)
	in.cmd = exec.Command(prog, "-dc")
	in.cmd.Stdin, in.cmd.Stdout, in.cmd.Stderr = inR, outW, in.stderr
	if in.file != nil {
		in.cmd.Stdin = in.file
	}
	// Bounds Wait when something the program started holds its stderr.
	in.cmd.WaitDelay = time.Second
	err = in.cmd.Start()
	// The program holds its own copies; ours would keep its stdin open
	// and hide its output's end. (The blob's file stays open here: its
	// offset, shared with the program, tells how far the program read.)
	if inR != nil {
		inR.Close()
	}
	outW.Close()
	if err != nil {
		in.closeStdin(nil)
		outR.Close()
		return nil, fmt.Errorf("starting %s: %w", prog, err)
	}
	in.sum = &crcReader{r: outR, c: outR}
	in.out = newReadAhead(in.sum)
	go in.feed(src)
	return in, nil
}

// closeStdin closes what startInflater opened for the program's stdin
// (and r, the pipe's read end, if not nil) when it could not start.
func (in *inflater) closeStdin(r *os.File) {
	for _, f := range []*os.File{r, in.stdin, in.file} {
		if f != nil {
			f.Close()
		}
	}
}

// feed copies src into the program's stdin, remembering its last bytes;
// when the program reads the blob's file itself, it only reads src to
// its end (which checks the blob's digest and size).
func (in *inflater) feed(src io.Reader) {
	defer close(in.fed)
	if in.stdin != nil {
		defer in.stdin.Close()
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			in.keepTail(buf[:n])
			if in.stdin == nil {
				continue
			}
			if _, werr := in.stdin.Write(buf[:n]); werr != nil {
				// The program exited (or was killed) before reading all of
				// the blob.
				in.unread = true
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			in.feedErr = err
			return
		}
	}
}

func (in *inflater) keepTail(b []byte) {
	if len(b) >= len(in.tail) {
		copy(in.tail[:], b[len(b)-len(in.tail):])
	} else {
		copy(in.tail[:], in.tail[len(b):])
		copy(in.tail[len(in.tail)-len(b):], b)
	}
	in.tailN += int64(len(b))
}

func (in *inflater) Read(p []byte) (int, error) {
	n, err := in.out.Read(p)
	if err == io.EOF {
		err = in.finish()
	}
	return n, err
}

// finish decides, at the end of the program's output, whether that was
// the end of the layer.
func (in *inflater) finish() error {
	in.wait() // the program exited: the feeder's writes cannot block
	<-in.fed
	if in.feedErr != nil {
		return in.feedErr // the blob's own error: its digest, its size, a read
	}
	if why := in.failure(); why != "" {
		in.refused = errors.New(why)
		return errRefused
	}
	if in.file != nil {
		// The offset the program left on the description it shared with
		// us: short of the blob's end, it stopped reading early.
		off, err := in.file.Seek(0, io.SeekCurrent)
		in.unread = err != nil || off < in.tailN
	}
	if in.unread {
		in.refused = fmt.Errorf("%s -dc stopped before the end of the blob (bytes after the gzip data)", filepath.Base(in.prog))
		return errRefused
	}
	crc, n := in.sum.crc, in.sum.n
	if in.tailN < 8 || binary.LittleEndian.Uint32(in.tail[:4]) != crc || binary.LittleEndian.Uint32(in.tail[4:]) != uint32(n) {
		in.refused = errors.New("the blob does not end with the trailer of one gzip member holding all its data (several members, or bytes after the last)")
		return errRefused
	}
	return io.EOF
}

// failure says how the program failed on its own ("" if it did not).
func (in *inflater) failure() string {
	st := in.cmd.ProcessState
	if st == nil {
		return ""
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	msg := strings.Join(strings.Fields(strings.ReplaceAll(in.stderr.String(), "\n", "; ")), " ")
	if msg != "" {
		msg = ": " + msg
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return ""
	case ws.Exited():
		return fmt.Sprintf("%s -dc exited with status %d%s", filepath.Base(in.prog), ws.ExitStatus(), msg)
	case ws.Signaled() && in.killed && ws.Signal() == syscall.SIGKILL:
		return ""
	default:
		return fmt.Sprintf("%s -dc: %v%s", filepath.Base(in.prog), st, msg)
	}
}

func (in *inflater) wait() {
	in.waitOnce.Do(func() { in.waitErr = in.cmd.Wait() })
}

// Close ends the program (killed unless it has exited) and every
// goroutine of the inflater, and reaps the program. After a failure that
// finish did not see, it sets refused when the program had failed on its
// own before being killed.
func (in *inflater) Close() error {
	in.once.Do(func() {
		if in.cmd.ProcessState == nil {
			in.killed = true
			in.cmd.Process.Kill()
		}
		in.closeSrc()
		<-in.fed
		in.out.Close()
		in.wait()
		if in.file != nil {
			in.file.Close()
		}
		if in.refused == nil {
			if why := in.failure(); why != "" {
				in.refused = errors.New(why)
			}
		}
	})
	return nil
}

// crcReader is the CRC-32 (IEEE, as gzip's trailer) and length of what
// passes.
type crcReader struct {
	r   io.Reader
	c   io.Closer
	crc uint32
	n   int64
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, crc32.IEEETable, p[:n])
	c.n += int64(n)
	return n, err
}

func (c *crcReader) Close() error { return c.c.Close() }

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := h.max - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}
