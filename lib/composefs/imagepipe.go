package composefs

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// imagePipe is the io.Writer WriteImageFrom gives the image's producer:
// what it writes is copied into large buffers, which one goroutine
// writes to the file, hashes, and sends to the disk, so that the
// fs-verity digest and the write of the image (a tenth of a second for
// the 36 MB image of a 119k-entry tree) run beside the producer instead
// of after it, on the core a pull otherwise leaves idle at that point.
// The buffers in flight are bounded (imagePipeBuffers of
// imagePipeBufSize).
type imagePipe struct {
	cur  []byte
	n    int64
	full chan []byte
	free chan []byte
	// failed is closed when the consumer met an error (err); done when
	// it has returned.
	failed chan struct{}
	done   chan struct{}
	err    error
}

const (
	imagePipeBufSize = 1 << 20 // a multiple of the fs-verity block
	imagePipeBuffers = 3
	// Writeback of what was written is started every this many bytes,
	// so that the syncfs that must come before the image's name finds
	// little left to write (see atomicfile.StartWriteback).
	imagePipeWriteback = 4 << 20
)

// newImagePipe starts the consumer: it writes every buffer to f and to
// h, in order.
func newImagePipe(f *os.File, h io.Writer) *imagePipe {
	p := &imagePipe{
		full:   make(chan []byte, imagePipeBuffers),
		free:   make(chan []byte, imagePipeBuffers),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range imagePipeBuffers {
		p.free <- make([]byte, 0, imagePipeBufSize)
	}
	go p.consume(f, h)
	return p
}

func (p *imagePipe) consume(f *os.File, h io.Writer) {
	defer close(p.done)
	var off, started int64
	for b := range p.full {
		if p.err == nil {
			if _, err := f.Write(b); err != nil {
				p.err = err
				close(p.failed)
			} else {
				h.Write(b)
				off += int64(len(b))
				if off-started >= imagePipeWriteback {
					// An error here is met again by the syncfs, which
					// reports it.
					unix.SyncFileRange(int(f.Fd()), started, off-started, unix.SYNC_FILE_RANGE_WRITE)
					started = off
				}
			}
		}
		p.free <- b[:0]
	}
}

func (p *imagePipe) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if p.cur == nil {
			select {
			case p.cur = <-p.free:
			case <-p.failed:
				return n - len(b), p.err
			}
		}
		k := copy(p.cur[len(p.cur):cap(p.cur)], b)
		p.cur = p.cur[:len(p.cur)+k]
		b = b[k:]
		p.n += int64(k)
		if len(p.cur) == cap(p.cur) {
			// Never blocks: there are no more buffers than room.
			p.full <- p.cur
			p.cur = nil
		}
	}
	return n, nil
}

// Close hands over what is left and waits until the consumer has written
// everything; it returns the consumer's error.
func (p *imagePipe) Close() error {
	if len(p.cur) > 0 {
		p.full <- p.cur
	}
	p.cur = nil
	close(p.full)
	<-p.done
	return p.err
}
