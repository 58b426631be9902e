package cstorage

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/crc64iso"
	"github.com/cfs-project/cfs/lib/reflink"
)

// aheadChunk is a chunk on its way from the chunk reader to the Differ. A
// file chunk is cloned by a worker into an unnamed file of the staging
// directory and read once there for its CRC64, ahead of the tar: the
// Differ then links the clone into place as the member's file (or reads
// it as the stream's bytes), and reads it again, from the page cache,
// only for the layer's sha256, which must be taken in tar order.
type aheadChunk struct {
	ch   Chunk
	err  error         // from the chunk reader
	done chan struct{} // nil: not a file chunk
	// Set by the worker: the clone (open read-write, unnamed, ours to
	// close), how it was made, the CRC64 of its bytes, or an error.
	clone  *os.File
	how    reflink.Result
	crc    uint64
	known  bool // crc came from bodyCRC: the clone was not read
	preErr error
}

// chunksAhead runs the chunk reader and the cloning workers.
type chunksAhead struct {
	items chan *aheadChunk
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

const (
	// chunksAheadMax bounds the chunks read ahead of the tar, each file
	// chunk holding two descriptors until the Differ reaches it.
	chunksAheadMax = 128
	chunkReadBuf   = 256 << 10
)

// startChunksAhead starts reading chunks ahead and cloning each file chunk
// into dir under policy, on two workers per CPU. A chunk whose CRC64
// bodyCRC (if not nil) knows is cloned without being read.
func startChunksAhead(chunks ChunkReader, dir string, policy reflink.Policy, bodyCRC func(*os.File) (uint64, bool)) *chunksAhead {
	a := &chunksAhead{items: make(chan *aheadChunk, chunksAheadMax), stop: make(chan struct{})}
	jobs := make(chan *aheadChunk)
	workers := 2 * runtime.GOMAXPROCS(0)
	a.wg.Add(1 + workers)
	go func() {
		defer a.wg.Done()
		defer close(a.items)
		defer close(jobs)
		for {
			ch, err := chunks.Next()
			it := &aheadChunk{ch: ch, err: err}
			if err == nil && ch.File != nil {
				it.done = make(chan struct{})
			}
			select {
			case a.items <- it:
			case <-a.stop:
				if ch.File != nil {
					ch.File.Close()
				}
				return
			}
			if err != nil {
				return
			}
			if it.done != nil {
				select {
				case jobs <- it:
				case <-a.stop:
					ch.File.Close()
					it.preErr = errStopped
					close(it.done)
					return
				}
			}
		}
	}()
	for range workers {
		go func() {
			defer a.wg.Done()
			buf := make([]byte, chunkReadBuf)
			for it := range jobs {
				it.clone, it.how, it.crc, it.known, it.preErr = cloneAhead(it.ch, dir, policy, bodyCRC, buf)
				it.ch.File.Close()
				close(it.done)
			}
		}()
	}
	return a
}

// cloneAhead clones a file chunk into an unnamed file of dir and reads the
// clone once for its CRC64 (which also brings it into the page cache for
// the sha256 that may follow), unless bodyCRC knows it (known).
func cloneAhead(ch Chunk, dir string, policy reflink.Policy, bodyCRC func(*os.File) (uint64, bool), buf []byte) (clone *os.File, how reflink.Result, crc uint64, known bool, err error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, 0, 0, false, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), ch.File.Name())
	how, err = reflink.CloneFile(f, ch.File, policy)
	if err != nil {
		f.Close()
		return nil, 0, 0, false, err
	}
	if bodyCRC != nil {
		if crc, ok := bodyCRC(ch.File); ok {
			return f, how, crc, true, nil
		}
	}
	h := crc64iso.New()
	var off int64
	for off < ch.Size {
		p := buf
		if left := ch.Size - off; int64(len(p)) > left {
			p = p[:left]
		}
		n, err := f.ReadAt(p, off)
		h.Write(p[:n])
		off += int64(n)
		if off == ch.Size {
			break
		}
		if err == io.EOF || n == 0 && err == nil {
			f.Close()
			return nil, 0, 0, false, fmt.Errorf("%s: %w (shorter than the %d bytes the stream says)", ch.File.Name(), io.ErrUnexpectedEOF, ch.Size)
		}
		if err != nil {
			f.Close()
			return nil, 0, 0, false, err
		}
	}
	return f, how, h.Sum64(), false, nil
}

// next is the next chunk, its file chunk (if any) cloned.
func (a *chunksAhead) next() (*aheadChunk, error) {
	it, ok := <-a.items
	if !ok {
		return nil, io.EOF
	}
	if it.err != nil {
		return nil, it.err
	}
	if it.done != nil {
		<-it.done
		if it.preErr != nil {
			return nil, it.preErr
		}
	}
	return it, nil
}

// close stops the reader and the workers and closes every clone the
// Differ did not reach.
func (a *chunksAhead) close() {
	a.once.Do(func() {
		close(a.stop)
		for it := range a.items {
			if it.done != nil {
				<-it.done
				if it.clone != nil {
					it.clone.Close()
				}
			}
		}
		a.wg.Wait()
	})
}

// linkInPlace gives an unnamed file the name path (atomicfile.Link: by
// descriptor where the capability allows, no walk through /proc).
func linkInPlace(f *os.File, path string) error {
	if err := atomicfile.Link(f, unix.AT_FDCWD, path); err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	return nil
}
