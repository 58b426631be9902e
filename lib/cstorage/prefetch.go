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
	src   *os.File      // read-only, ours to close; nil when data holds the body
	data  []byte        // a small body's bytes, read once by the worker (a bodyPool buffer)
	token any
	err   error
}

// release gives back what a prepared item holds for the reader.
func (it *item) release() {
	if it.src != nil {
		it.src.Close()
		it.src = nil
	}
	if it.data != nil {
		putBody(it.data)
		it.data = nil
	}
}

// memBodyMax is the largest body a prefetch worker hands to the reader
// as bytes rather than as a file: the worker reads it in one call
// anyway, and keeping the bytes spares the reader a descriptor of its
// own (an open through /proc and a close) and a second read per file,
// for the many small files of an OS image. Bounded so that the bodies
// held ahead of the reader stay a few MiB.
const memBodyMax = 64 << 10

// bodyPools hold the buffers of in-memory bodies by power-of-two size
// class, 4 KiB to memBodyMax.
var bodyPools [5]sync.Pool

func bodyClass(n int64) int {
	c := 0
	for size := int64(4 << 10); size < n; size <<= 1 {
		c++
	}
	return c
}

// getBody returns a buffer of n <= memBodyMax bytes.
func getBody(n int64) []byte {
	c := bodyClass(n)
	if b, ok := bodyPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, int64(4<<10)<<c)
}

func putBody(b []byte) {
	c := bodyClass(int64(cap(b)))
	if int64(4<<10)<<c != int64(cap(b)) {
		return
	}
	bodyPools[c].Put(&b)
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
				it.src, it.data, it.token, it.err = t.prepare(it.e, prep, buf, crc)
				close(it.done)
			}
		}()
	}
}

// prepare opens one body, hands it to prep and reads what prep returns
// once, checking it against the CRC64 tar-split recorded. A body of at
// most memBodyMax bytes is returned as those bytes, a bigger one as a
// read-only descriptor of the file prep returned.
func (t *LayerTar) prepare(e *tsstorage.Entry, prep BodyPrep, buf []byte, crc *crc64iso.Digest) (*os.File, []byte, any, error) {
	diff, err := t.openDiff(e)
	if err != nil {
		return nil, nil, nil, err
	}
	name := diff.Name()
	src, sink, token, err := prep.Start(diff, e.Size)
	diff.Close()
	if err != nil {
		return nil, nil, nil, err
	}
	var data []byte
	if e.Size <= memBodyMax {
		data = getBody(e.Size)
		buf = data
	}
	fail := func(err error) (*os.File, []byte, any, error) {
		prep.Drop(token)
		if data != nil {
			putBody(data)
		}
		return nil, nil, nil, err
	}
	crc.Reset()
	var off int64
	for off < e.Size {
		p := buf
		if data != nil {
			p = data[off:]
		} else if left := e.Size - off; int64(len(p)) > left {
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
			return fail(fmt.Errorf("file %s shrank to %d bytes while being read", src.Name(), off))
		}
		if err != nil {
			return fail(err)
		}
	}
	var got [8]byte
	binary.BigEndian.PutUint64(got[:], crc.Sum64())
	if !bytes.Equal(got[:], e.Payload) {
		return fail(fmt.Errorf("file %s does not match the CRC64 tar-split recorded (changed after the layer was stored?)", name))
	}
	if data != nil {
		if err := prep.Verified(token); err != nil {
			putBody(data)
			return nil, nil, nil, err
		}
		return nil, data, token, nil
	}
	// A read-only descriptor of the same inode for the tar: Verified may
	// close src (a writable descriptor would also keep the kernel from
	// enabling fs-verity on it).
	// unix.Open, not os.Open: that one tries to put the file in the
	// poller, four system calls more per body.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(src.Fd())), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("reopening %s: %w", src.Name(), err))
	}
	ro := os.NewFile(uintptr(fd), src.Name())
	if err := prep.Verified(token); err != nil {
		ro.Close()
		return nil, nil, nil, err
	}
	return ro, nil, token, nil
}

// stopAll stops the decoder and the workers and drops every prepared
// body the reader did not reach.
func (p *prefetcher) stopAll() {
	p.once.Do(func() {
		close(p.stop)
		for it := range p.items {
			if it.done != nil {
				<-it.done
				it.release()
			}
		}
		p.wg.Wait()
	})
}
