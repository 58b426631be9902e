package clone

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/stream"
)

// job is one entry on its way from the reader to the writer. Entries are
// written in the order they were read; the ones that need work (cloning,
// digesting) are done by a pool of workers meanwhile.
type job struct {
	entry *stream.Entry
	run   func() error // nil when the entry passes through unchanged
	err   error
	done  chan struct{}
}

// ordered runs jobs on workers goroutines and hands them to emit in
// submission order. At most window jobs are in flight, which bounds memory
// whatever the number of entries. The first error (from a job or from
// emit) cancels the rest and is returned by wait.
type ordered struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	work   chan *job
	queue  chan *job
	wg     sync.WaitGroup
	emitWG sync.WaitGroup
	errMu  sync.Mutex
	err    error
}

func newOrdered(ctx context.Context, workers, window int, emit func(*job) error) *ordered {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	o := &ordered{parent: parent, ctx: ctx, cancel: cancel, work: make(chan *job), queue: make(chan *job, window)}
	for i := 0; i < workers; i++ {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for j := range o.work {
				if o.ctx.Err() == nil {
					j.err = j.run()
				} else {
					j.err = o.ctx.Err()
				}
				close(j.done)
			}
		}()
	}
	o.emitWG.Add(1)
	go func() {
		defer o.emitWG.Done()
		for j := range o.queue {
			<-j.done
			if o.ctx.Err() != nil {
				continue // drain, so submit never blocks forever
			}
			err := j.err
			if err == nil {
				err = emit(j)
			}
			if err != nil {
				o.fail(err)
			}
		}
	}()
	return o
}

func (o *ordered) fail(err error) {
	o.errMu.Lock()
	if o.err == nil {
		o.err = err
	}
	o.errMu.Unlock()
	o.cancel()
}

// submit queues j; it returns false once the pipeline has failed.
func (o *ordered) submit(j *job) bool {
	j.done = make(chan struct{})
	select {
	case o.queue <- j:
	case <-o.ctx.Done():
		return false
	}
	if j.run == nil {
		close(j.done)
		return true
	}
	select {
	case o.work <- j:
		return true
	case <-o.ctx.Done():
		j.err = o.ctx.Err()
		close(j.done)
		return false
	}
}

// wait finishes the pipeline and returns its first error.
func (o *ordered) wait() error {
	close(o.work)
	o.wg.Wait()
	close(o.queue)
	o.emitWG.Wait()
	o.cancel()
	o.errMu.Lock()
	defer o.errMu.Unlock()
	if o.err == nil {
		return o.parent.Err() // cancelled from outside: output is incomplete
	}
	return o.err
}

// Commit runs the pipeline cfs-pull | cfs-clone --to ostree |
// cfs-ostree-import in one process: produce writes the object list to the
// writer it is given (and closes it), ToOstreeEntries clones the objects
// into cloneRepo, and ostreeimport.ImportEntries commits into importRepo
// (two handles on one repository: the clone's shared lock is held until
// its handle is closed). The stages are connected by stream pipes, so the
// list is never encoded. A failing stage closes its pipes with its error,
// so the others stop, and no ref is written.
func Commit(ctx context.Context, cloneRepo, importRepo *ostree.Repo, produce func(stream.EntryWriter) error, opts Options, iopts ostreeimport.Options) (*Summary, *ostreeimport.Result, error) {
	listR, listW := stream.Pipe()
	annR, annW := stream.Pipe()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := produce(listW)
		listW.CloseWithError(err)
		return err
	})
	var sum *Summary
	g.Go(func() error {
		var err error
		sum, err = ToOstreeEntries(gctx, cloneRepo, listR, annW, opts)
		annW.CloseWithError(err)
		if err != nil {
			listR.CloseWithError(err)
		}
		return err
	})
	var res *ostreeimport.Result
	g.Go(func() error {
		var err error
		res, err = ostreeimport.ImportEntries(gctx, importRepo, annR, iopts)
		if err != nil {
			annR.CloseWithError(err)
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return sum, nil, err
	}
	return sum, res, nil
}
