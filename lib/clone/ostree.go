package clone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// Options tune ToOstree.
type Options struct {
	// Policy is reflink.Always or reflink.Auto; 0 picks Always when the
	// repository's filesystem supports FICLONE and Auto otherwise.
	Policy reflink.Policy
	// Workers digest and clone that many files at once (default
	// DefaultWorkers).
	Workers int
	// Progress, if set, is called after each entry is written.
	Progress func(s *Summary, bytesDone int64)
}

// DefaultWorkers is 8 per CPU: a clone waits on the disk more than it
// computes, for the bytes it hashes or, where content records spare the
// read, for the inodes and the filesystem's transactions, so many more
// in flight than CPUs keep the disk busy. 178 MB, 5.5k files, caches
// dropped, 2 CPUs: 62-64 s with 2 workers, 32-35 s with 8, on a loaded
// machine; the 100k-entry image with records and the sources looked up
// ahead: 20.1-25.3 s (median 21.0, 6 runs) with 8, 18.4-19.8 s (median
// 19.1, 4 runs) with 16.
func DefaultWorkers() int { return 8 * runtime.GOMAXPROCS(0) }

// DefaultPolicy is the policy when none is asked for: reflinks are required
// where they can work, and the bytes are copied where they cannot.
func DefaultPolicy(repo *ostree.Repo) (reflink.Policy, error) {
	ok, err := reflink.Supported(repo.Path() + "/tmp")
	if err != nil {
		return 0, err
	}
	if ok {
		return reflink.Always, nil
	}
	return reflink.Auto, nil
}

// ToOstree reads an object list from in, writes a file or symlink object
// into repo for every regular file and symlink the ostree commit will hold,
// and writes the list to out with each one's "ostree" checksum and
// stores.ostree set. The end record is written only after the input's end
// record checked out and every object is in place, so a consumer of out
// commits nothing from a clone that failed.
//
// The repository's shared lock, taken at the first object written, is held
// until the caller closes repo; close it only after out has been consumed
// if a prune may run concurrently.
func ToOstree(ctx context.Context, repo *ostree.Repo, in io.Reader, out io.Writer, opts Options) (*Summary, error) {
	return ToOstreeEntries(ctx, repo, stream.NewReader(in), stream.NewWriter(out), opts)
}

// ToOstreeEntries is ToOstree on a stream already decoded: it reads the
// entries from r and hands them, annotated, to w (a stream.Pipe's ends
// when producer and consumer run in the same process), closing w only
// when every object is in place.
func ToOstreeEntries(ctx context.Context, repo *ostree.Repo, r stream.EntryReader, w stream.EntryWriter, opts Options) (*Summary, error) {
	sum := &Summary{Repo: repo.Path(), Mode: string(repo.Mode())}
	img, err := r.Image()
	if err != nil {
		return sum, err
	}
	if opts.Policy == 0 {
		if opts.Policy, err = DefaultPolicy(repo); err != nil {
			return sum, err
		}
	}
	if opts.Policy != reflink.Always && opts.Policy != reflink.Auto {
		return sum, fmt.Errorf("reflink policy %s: cfs-clone never copies when it could share, use always or auto", opts.Policy)
	}
	sum.Policy = opts.Policy.String()
	if err := preflight(repo, img, opts.Policy); err != nil {
		return sum, err
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers()
	}
	trusted := trustedRepository(img)

	rec := *img
	rec.Stores.Ostree = &stream.OstreeStore{Repo: repo.Path(), Mode: string(repo.Mode())}
	if err := w.WriteImage(&rec); err != nil {
		return sum, err
	}
	var done int64
	// An entry goes out only once its object is durable and named: the
	// consumer (cfs-ostree-import) checks each object as the entry
	// arrives. Entries are held back and released a batch at a time, one
	// Flush (one syncfs) per batch. The flusher syncs, names and writes
	// one batch while the workers go on with the next: waiting for it
	// here would stall the whole window for a sync and a thousand links.
	fl := newFlusher(repo, w)
	held := make([]*stream.Entry, 0, releaseEvery)
	pipe := newOrdered(ctx, opts.Workers, 64*opts.Workers, func(j *job) error {
		e := j.entry
		sum.Entries++
		if held = append(held, e); len(held) == releaseEvery {
			if err := fl.release(held); err != nil {
				return err
			}
			held = make([]*stream.Entry, 0, releaseEvery)
		}
		if e.Type == stream.TypeFile {
			done += e.Size
		}
		if opts.Progress != nil {
			opts.Progress(sum, done)
		}
		return nil
	})
	lookAhead := min(aheadPerWorker*opts.Workers, maxLookAhead)
	pf := newPrefetcher(lookAhead)
	readErr := func() error {
		// Jobs are read lookAhead entries before they are submitted,
		// so that the prefetcher brings their sources' inodes in
		// while the workers clone the ones before.
		ahead, next := make([]*job, 0, lookAhead), 0
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if err := ostreeimport.Check(e); err != nil {
				return fmt.Errorf("object list line %d: %w", r.Line(), err)
			}
			j := &job{entry: e}
			if ostreeimport.Place(e) == ostreeimport.Keep {
				line := r.Line()
				switch e.Type {
				case stream.TypeFile:
					j.run = func() error { return wrapLine(line, cloneFile(repo, e, opts.Policy, trusted, sum)) }
					if e.Size > stream.InlineMax {
						pf.hint(e.Src)
					}
				case stream.TypeSymlink:
					j.run = func() error { return wrapLine(line, writeSymlink(repo, e, sum)) }
				}
			}
			// A ring: ahead[next] is the oldest entry once it is full.
			if len(ahead) < cap(ahead) {
				ahead = append(ahead, j)
				continue
			}
			if !pipe.submit(ahead[next]) {
				return nil // the pipeline's own error is reported by wait
			}
			ahead[next] = j
			next = (next + 1) % len(ahead)
		}
		for i := range ahead {
			if !pipe.submit(ahead[(next+i)%len(ahead)]) {
				return nil
			}
		}
		return nil
	}()
	pf.close()
	pipeErr := pipe.wait()
	flushErr := fl.close()
	if readErr != nil {
		return sum, readErr
	}
	if pipeErr != nil {
		return sum, pipeErr
	}
	if flushErr != nil {
		return sum, flushErr
	}
	// The last objects become durable and get their names, and the names
	// become durable too, before their entries and the end record go out:
	// cfs-ostree-import re-run after a power cut must find every object
	// a finished list names.
	if err := repo.Flush(); err != nil {
		return sum, err
	}
	if err := repo.Sync(); err != nil {
		return sum, err
	}
	for _, e := range held {
		if err := w.WriteEntry(e); err != nil {
			return sum, err
		}
	}
	return sum, w.Close()
}

// flusher makes the objects of a batch of entries durable and named
// (repo.Flush) and then writes the entries, in a goroutine of its own,
// one batch at a time and in order.
type flusher struct {
	batches chan []*stream.Entry
	done    chan struct{}
	err     atomic.Pointer[error] // the first error; later batches are dropped
}

func newFlusher(repo *ostree.Repo, w stream.EntryWriter) *flusher {
	f := &flusher{batches: make(chan []*stream.Entry, 1), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for batch := range f.batches {
			if f.err.Load() != nil {
				continue // drain, so release never blocks
			}
			err := repo.Flush()
			for _, e := range batch {
				if err != nil {
					break
				}
				err = w.WriteEntry(e)
			}
			if err != nil {
				f.err.Store(&err)
			}
		}
	}()
	return f
}

// release queues a batch whose objects are all written (queued in the
// repository); it returns the error of an earlier batch, if any.
func (f *flusher) release(batch []*stream.Entry) error {
	if err := f.err.Load(); err != nil {
		return *err
	}
	f.batches <- batch
	return nil
}

// close waits for the batches released so far and returns the first error.
func (f *flusher) close() error {
	close(f.batches)
	<-f.done
	if err := f.err.Load(); err != nil {
		return *err
	}
	return nil
}

// releaseEvery is how many entries are held back at most until their
// objects are flushed and the entries written.
const releaseEvery = 1024

func wrapLine(line int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("object list line %d: %w", line, err)
}

// preflight refuses, before any object is written, a clone that cannot
// share extents under the Always policy: a repository on a filesystem
// without FICLONE, or a composefs repository on another filesystem. Its
// errors match reflink.ErrRefused.
func preflight(repo *ostree.Repo, img *stream.Image, policy reflink.Policy) error {
	if policy != reflink.Always {
		return nil
	}
	ok, err := reflink.Supported(repo.Path() + "/tmp")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the filesystem of %s does not support reflinks: %w", repo.Path(), reflink.ErrRefused)
	}
	if img.Stores.Composefs != nil && img.Stores.Composefs.Repo != "" {
		var a, b unix.Stat_t
		if err := unix.Stat(repo.Path(), &a); err != nil {
			return err
		}
		if err := unix.Stat(img.Stores.Composefs.Repo, &b); err == nil && a.Dev != b.Dev {
			return fmt.Errorf("composefs repo %s and ostree repo %s are on different filesystems, which cannot share extents: %w", img.Stores.Composefs.Repo, repo.Path(), reflink.ErrRefused)
		}
	}
	return nil
}

// cloneFile makes the file object for e and sets e.Ostree.
func cloneFile(repo *ostree.Repo, e *stream.Entry, policy reflink.Policy, trusted string, sum *Summary) error {
	meta := ostreeimport.FileMeta(e)
	if e.Size <= stream.InlineMax {
		csum, _, err := repo.WriteFileObjectFrom(meta, bytes.NewReader(e.Inline))
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		return annotate(e, csum, sum, &sum.Small)
	}
	src, st, err := openSource(e)
	if err != nil {
		return err
	}
	defer src.Close()
	// The object is cloned first and its bytes read once, from the clone:
	// that one read gives the ostree checksum of exactly what is stored
	// and, beside it, the fs-verity digest that proves those bytes are the
	// composefs object the entry names (see verifier).
	v, err := newVerifier(e, src, st, trusted)
	if err != nil {
		return err
	}
	recorded, err := v.recorded(src, meta)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	var result reflink.Result
	csum, created, err := repo.WriteFileObjectWith(meta, func(tmp *os.File) error {
		var err error
		result, err = reflink.CloneFile(tmp, src, policy)
		return err
	}, ostree.FileObjectOptions{KnownChecksum: e.Ostree, KnownSize: e.Size, Content: v.content(), Verify: v.verify, HashFrom: v.measured, Recorded: recorded})
	if err != nil {
		var refused *reflink.RefusedError
		if errors.As(err, &refused) {
			return fmt.Errorf("%s: %v", e.Path, refused)
		}
		var mismatch *verityMismatch
		if errors.As(err, &mismatch) {
			return mismatch
		}
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	switch {
	case !created:
		sum.add(&sum.Present, 1)
		sum.add(&sum.PresentBytes, e.Size)
	case result == reflink.Cloned:
		sum.add(&sum.Reflinked, 1)
		sum.add(&sum.ReflinkedBytes, e.Size)
	default:
		sum.add(&sum.Copied, 1)
		sum.add(&sum.CopiedBytes, e.Size)
	}
	if recorded != "" {
		sum.add(&sum.Recorded, 1)
	}
	if e.Ostree != "" && e.Ostree != csum {
		return fmt.Errorf("%s: the list says ostree %s, the bytes and metadata give %s", e.Path, e.Ostree, csum)
	}
	e.Ostree = csum
	return nil
}

// writeSymlink writes e's symlink object and records its checksum in the
// list, as for files.
func writeSymlink(repo *ostree.Repo, e *stream.Entry, sum *Summary) error {
	csum, _, err := repo.WriteSymlinkObject(ostreeimport.FileMeta(e), e.Target)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if e.Ostree != "" && e.Ostree != csum {
		return fmt.Errorf("%s: the list says ostree %s, the target and metadata give %s", e.Path, e.Ostree, csum)
	}
	e.Ostree = csum
	sum.add(&sum.Symlinks, 1)
	return nil
}

func annotate(e *stream.Entry, csum string, sum *Summary, counter *int64) error {
	if e.Ostree != "" && e.Ostree != csum {
		return fmt.Errorf("%s: the list says ostree %s, the content and metadata give %s", e.Path, e.Ostree, csum)
	}
	e.Ostree = csum
	sum.add(counter, 1)
	return nil
}
