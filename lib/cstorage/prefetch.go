package cstorage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/crc64iso"
)

// BodyPrep readies the bodies a LayerTar prefetches.
type BodyPrep struct {
	// Start gets a body's diff file (open only during the call; its size
	// already checked against tar-split) and returns the file the tar is
	// to carry the body from (a clone, private to the caller), a writer
	// that must see each of its bytes (digests), and a token for the
	// caller's state. The prefetcher reads src once, into sink and the
	// CRC64 check.
	Start func(diff *os.File, size int64) (src *os.File, sink io.Writer, token any, err error)
	// Verified is called once every byte of src went into sink and
	// matched the CRC64 (the caller can finish its digests and store its
	// object: the tar reads the body through a descriptor of its own, so
	// src may be closed). The token is then the caller's, handed out by
	// NextPrepared.
	Verified func(token any) error
	// Drop releases a token before Verified: the body failed its check,
	// or the reader stopped before it.
	Drop func(token any)
}

// item is one tar-split entry on its way from the decoder to the reader;
// a body over the minimum size is prefetched by a worker, which closes
// done when src and token (or err) are set.
type item struct {
	e         *tsstorage.Entry
	unpackErr error // the tar-split ends (io.EOF) or is broken here

	done  chan struct{} // nil: not prefetched
	src   *os.File      // read-only, ours to close
	token any
	err   error
}

type prefetcher struct {
	prep  BodyPrep
	items chan *item
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

var errStopped = errors.New("layer closed")

// prefetchBuf is the read size of a prefetch worker: big enough that a
// large body costs few system calls, small enough for several workers.
const prefetchBuf = 256 << 10

// Prefetch makes the bodies of more than min bytes be opened and read
// ahead of the reader by workers (at most ahead entries ahead), each
// through prep, so that the cloning, the first read of every byte and the
// digests of many files overlap, on every core, while the reader goes
// through the tar in order. Each such body must then be taken with
// NextPrepared, or is dropped when the reader passes it. Call it before
// the first Read.
func (t *LayerTar) Prefetch(min int64, workers, ahead int, prep BodyPrep) {
	p := &prefetcher{prep: prep, items: make(chan *item, ahead), stop: make(chan struct{})}
	t.pre = p
	jobs := make(chan *item)
	p.wg.Add(1 + workers)
	go func() {
		defer p.wg.Done()
		defer close(p.items)
		defer close(jobs)
		for {
			e, err := t.unpack.Next()
			it := &item{e: e, unpackErr: err}
			if err == nil && e.Type == tsstorage.FileType && e.Size > min {
				it.done = make(chan struct{})
			}
			select {
			case p.items <- it:
			case <-p.stop:
				return
			}
			if err != nil {
				return
			}
			if it.done != nil {
				select {
				case jobs <- it:
				case <-p.stop:
					it.err = errStopped
					close(it.done)
					return
				}
			}
		}
	}()
	for range workers {
		go func() {
			defer p.wg.Done()
			buf := make([]byte, prefetchBuf)
			crc := crc64iso.New()
			for it := range jobs {
				it.src, it.token, it.err = t.prepare(it.e, prep, buf, crc)
				close(it.done)
			}
		}()
	}
}

// prepare opens one body, hands it to prep and reads what prep returns
// once, checking it against the CRC64 tar-split recorded.
func (t *LayerTar) prepare(e *tsstorage.Entry, prep BodyPrep, buf []byte, crc *crc64iso.Digest) (*os.File, any, error) {
	diff, err := t.openDiff(e)
	if err != nil {
		return nil, nil, err
	}
	name := diff.Name()
	src, sink, token, err := prep.Start(diff, e.Size)
	diff.Close()
	if err != nil {
		return nil, nil, err
	}
	crc.Reset()
	var off int64
	for off < e.Size {
		p := buf
		if left := e.Size - off; int64(len(p)) > left {
			p = p[:left]
		}
		n, err := src.ReadAt(p, off)
		crc.Write(p[:n])
		sink.Write(p[:n])
		off += int64(n)
		if off == e.Size {
			break
		}
		if err == io.EOF || n == 0 && err == nil {
			prep.Drop(token)
			return nil, nil, fmt.Errorf("file %s shrank to %d bytes while being read", src.Name(), off)
		}
		if err != nil {
			prep.Drop(token)
			return nil, nil, err
		}
	}
	var got [8]byte
	binary.BigEndian.PutUint64(got[:], crc.Sum64())
	if !bytes.Equal(got[:], e.Payload) {
		prep.Drop(token)
		return nil, nil, fmt.Errorf("file %s does not match the CRC64 tar-split recorded (changed after the layer was stored?)", name)
	}
	// A read-only descriptor of the same inode for the tar: Verified may
	// close src (a writable descriptor would also keep the kernel from
	// enabling fs-verity on it).
	// unix.Open, not os.Open: that one tries to put the file in the
	// poller, four system calls more per body.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(src.Fd())), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		prep.Drop(token)
		return nil, nil, fmt.Errorf("reopening %s: %w", src.Name(), err)
	}
	ro := os.NewFile(uintptr(fd), src.Name())
	if err := prep.Verified(token); err != nil {
		ro.Close()
		return nil, nil, err
	}
	return ro, token, nil
}

// stopAll stops the decoder and the workers and drops every prepared
// body the reader did not reach.
func (p *prefetcher) stopAll() {
	p.once.Do(func() {
		close(p.stop)
		for it := range p.items {
			if it.done != nil {
				<-it.done
				if it.err == nil {
					it.src.Close()
				}
			}
		}
		p.wg.Wait()
	})
}
