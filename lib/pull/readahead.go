package pull

import (
	"io"
	"sync"
)

// readAhead reads its source on a goroutine of its own, a few blocks
// ahead of the caller. A layer blob is read by the gzip decompressor,
// itself one goroutine, and inflating is the longest single chain of a
// pull: the blob's read(2) calls and its SHA-256 (verifiedBlob hashes
// what it reads) then run beside the inflating instead of in turn with
// it. The source's own error, the digest check at its end included,
// reaches the caller after the bytes before it, as it would unbuffered.
type readAhead struct {
	blocks chan []byte // filled blocks, in order
	free   chan []byte // blocks the caller is done with
	stop   chan struct{}
	done   chan struct{} // closed when the goroutine has returned
	err    error         // the source's error, read after blocks is closed
	cur    []byte        // what is left of the block being read
	held   []byte        // the whole of that block, to give back
	src    io.ReadCloser
	once   sync.Once
}

const (
	readAheadBlock  = 1 << 20
	readAheadBlocks = 4
)

// newReadAhead starts reading src; Close closes it.
func newReadAhead(src io.ReadCloser) *readAhead {
	ra := &readAhead{
		src:    src,
		blocks: make(chan []byte, readAheadBlocks),
		free:   make(chan []byte, readAheadBlocks),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range readAheadBlocks {
		ra.free <- make([]byte, readAheadBlock)
	}
	go ra.run(src)
	return ra
}

func (ra *readAhead) run(r io.Reader) {
	defer close(ra.done)
	defer close(ra.blocks)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, b)
		if n > 0 {
			select {
			case ra.blocks <- b[:n]:
			case <-ra.stop:
				return
			}
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if err != nil {
			ra.err = err
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(ra.cur) == 0 {
		if ra.held != nil {
			ra.free <- ra.held[:cap(ra.held)]
			ra.held = nil
		}
		b, ok := <-ra.blocks
		if !ok {
			// The goroutine wrote err before closing blocks; nil only
			// when Close stopped it.
			if ra.err == nil {
				return 0, io.ErrClosedPipe
			}
			return 0, ra.err
		}
		ra.cur, ra.held = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the goroutine, closes the source (which ends a read the
// goroutine may be waiting in) and waits until the goroutine has returned.
func (ra *readAhead) Close() error {
	var err error
	ra.once.Do(func() {
		close(ra.stop)
		err = ra.src.Close()
		<-ra.done
	})
	return err
}
