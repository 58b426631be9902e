package atomicfile

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Batch holds files that are complete but must not have their names yet.
// A link can reach the journal ahead of the data it names (any fsync on
// the filesystem commits it), so a power cut could leave a name over
// nothing. Files are therefore kept open and unnamed, and named in
// batches: one sync for the whole batch, then the names. One syncfs per
// batch instead of an fsync per file keeps the cost to a few journal
// commits per image.
type Batch[T any] struct {
	limit   int
	namers  int        // goroutines that name a flushed batch (SetNamers)
	flushMu sync.Mutex // one Flush at a time
	mu      sync.Mutex
	pending map[string]T
}

// defaultBatchLimit is the number of pending files that makes a batch full.
const defaultBatchLimit = 1024

// NewBatch returns an empty batch whose limit is bounded by the
// descriptors the process may hold, since every pending file is open.
func NewBatch[T any]() *Batch[T] { return NewBatchLimit[T](defaultBatchLimit) }

// NewBatchLimit is NewBatch with another limit than the default, bounded
// the same way by the descriptors the process may hold.
func NewBatchLimit[T any](limit int) *Batch[T] {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur/4 < uint64(limit) {
		limit = max(int(lim.Cur/4), 16)
	}
	return &Batch[T]{limit: limit, namers: 1, pending: map[string]T{}}
}

// SetNamers makes Flush call name from n goroutines at once (default 1).
// Naming is one link per file, each a filesystem transaction; for a batch
// of a thousand files spread over many directories, a single goroutine
// leaves the other CPUs idle while the writers wait for the batch.
func (b *Batch[T]) SetNamers(n int) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.namers = max(n, 1)
}

// Pending reports whether an item is queued under key and, if fn is not
// nil, calls it with that item while no Flush can take it away.
func (b *Batch[T]) Pending(key string, fn func(T)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	item, ok := b.pending[key]
	if ok && fn != nil {
		fn(item)
	}
	return ok
}

// Add queues item under key, unless an item is already queued there
// (added is false; the caller keeps item). full says the batch has
// reached its limit and the caller should Flush it.
func (b *Batch[T]) Add(key string, item T) (added, full bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.pending[key]; ok {
		return false, false
	}
	b.pending[key] = item
	return true, len(b.pending) >= b.limit
}

// Len is the number of items queued, those a running Flush has taken
// but not yet named included.
func (b *Batch[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Limit is the number of queued items at which Add reports the batch
// full.
func (b *Batch[T]) Limit() int { return b.limit }

// Flush takes every queued item, calls sync once and then name for each
// (from SetNamers goroutines), stopping at the first error; drop is then
// called for every item taken, named or not: one left unnamed is written
// again by a re-run.
func (b *Batch[T]) Flush(sync func() error, name func(T) error, drop func(T)) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	keys := make([]string, 0, len(b.pending))
	items := make([]T, 0, len(b.pending))
	for k, item := range b.pending {
		keys = append(keys, k)
		items = append(items, item)
	}
	b.mu.Unlock()
	if len(items) == 0 {
		return nil
	}
	err := sync()
	if err == nil {
		err = nameAll(items, name, b.namers)
	}
	// Named items leave the queue only now, so that Pending finds each
	// one either queued or under its name.
	b.mu.Lock()
	for _, k := range keys {
		delete(b.pending, k)
	}
	b.mu.Unlock()
	for _, item := range items {
		drop(item)
	}
	return err
}

// nameAll calls name for every item from up to n goroutines and returns
// the first error; after an error no further item is named.
func nameAll[T any](items []T, name func(T) error, n int) error {
	n = min(n, len(items))
	if n <= 1 {
		for _, item := range items {
			if err := name(item); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		next  int
		first error
	)
	take := func() (T, bool) {
		mu.Lock()
		defer mu.Unlock()
		var zero T
		if first != nil || next == len(items) {
			return zero, false
		}
		next++
		return items[next-1], true
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item, ok := take(); ok; item, ok = take() {
				if err := name(item); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// StartWriteback starts writing f's dirty pages to the disk without
// waiting for them (sync_file_range SYNC_FILE_RANGE_WRITE). A file that
// waits in a Batch is otherwise written back only by the batch's sync,
// all at once, while the writers stop: the filesystem's own writeback
// waits for gigabytes to be dirty or for 30 seconds. Started as soon as
// a large file is complete, its blocks go to the disk while the next
// files are written, and the batch's sync finds little left to write.
// It changes no durability guarantee: the batch's sync still comes
// before any name. An error here is not reported: the sync would meet
// the same failure and report it.
func StartWriteback(f *os.File) {
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
