package oci

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// The bodies of a layer's large members are stored by workers, so that
// the fs-verity digest and the writes of one member run beside the
// decompression and the tar parsing of the next ones: with a single big
// layer the import then keeps more than one core busy. The tar reader
// copies each body into buffers taken from a byte budget (the memory in
// flight is bounded, whatever the file sizes) and hands them to a
// worker; the splitstream is assembled in tar order by one goroutine,
// which waits for each object's id in turn.
const (
	pipelineBudget  = 8 << 20 // bytes of bodies in flight per layer
	pipelineChunk   = 1 << 20 // largest buffer; a multiple of the fs-verity block
	pipelineWorkers = 2
)

// chunkPools hold body buffers by size class (4 KiB to pipelineChunk).
var chunkPools [9]sync.Pool

func chunkClass(n int64) (int, int) {
	size, c := 4096, 0
	for int64(size) < n && size < pipelineChunk {
		size <<= 1
		c++
	}
	return c, size
}

func getChunk(n int64) []byte {
	c, size := chunkClass(n)
	if b, ok := chunkPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, size)[:n]
}

func putChunk(b []byte) {
	c, size := chunkClass(int64(cap(b)))
	if cap(b) != size {
		return
	}
	b = b[:cap(b)]
	chunkPools[c].Put(&b)
}

// bodyJob is one body on its way to becoming an object.
type bodyJob struct {
	size   int64
	prefix []byte      // composefs.WriteOptions.RecordPrefix
	chunks chan []byte // the body's buffers in order; closed after the last
	done   chan struct{}
	// Set by the worker before done is closed.
	id      []byte
	n       int64
	created bool
	err     error
}

// jobReader yields a job's buffers to WriteObject, giving each back to
// the budget once written.
type jobReader struct {
	j      *bodyJob
	budget *semaphore.Weighted
}

func (r jobReader) Read(p []byte) (int, error) { panic("jobReader is read with WriteTo") }

func (r jobReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var err error
	for b := range r.j.chunks {
		if err == nil {
			var n int
			n, err = w.Write(b)
			total += int64(n)
		}
		r.budget.Release(int64(cap(b)))
		putChunk(b)
	}
	if err == nil && total != r.j.size {
		// The tar ended inside the body: no object of what came.
		err = io.ErrUnexpectedEOF
	}
	return total, err
}

// pipelinedBodies counts the bodies handed to workers, so that a test
// can tell the pipeline ran.
var pipelinedBodies atomic.Int64

// bodyPipeline stores the bodies of one layer.
type bodyPipeline struct {
	repo      *composefs.Repository
	budget    *semaphore.Weighted
	jobs      chan *bodyJob
	wg        sync.WaitGroup
	failed    atomic.Bool
	closeOnce sync.Once
	batchMax  int64 // the largest body stored in a batch
}

func newBodyPipeline(repo *composefs.Repository) *bodyPipeline {
	p := newIdlePipeline(repo)
	p.startWorkers(pipelineWorkers)
	return p
}

// newIdlePipeline is a pipeline without workers yet.
func newIdlePipeline(repo *composefs.Repository) *bodyPipeline {
	return &bodyPipeline{repo: repo, budget: semaphore.NewWeighted(pipelineBudget), jobs: make(chan *bodyJob, 64),
		batchMax: min(int64(fsverity.BatchMax(repo.Algorithm())), pipelineChunk)}
}

func (p *bodyPipeline) startWorkers(n int) {
	for range n {
		p.wg.Add(1)
		go p.work()
	}
}

// Small bodies are stored in batches (composefs.WriteObjects), which
// hashes their fs-verity trees together: a worker that takes a small
// body also takes the small bodies queued behind it, up to batchBodies
// of them and batchBytes in all, without waiting for more. Each is one
// buffer, already in the budget or about to be: the tar reader fills the
// queued bodies in order, so the last one of a batch comes.
const (
	batchBodies = 8
	batchBytes  = 1 << 20
)

// batchedBodies counts the bodies stored in batches of two or more, so
// that a test can tell batching ran.
var batchedBodies atomic.Int64

func (p *bodyPipeline) work() {
	defer p.wg.Done()
	var next *bodyJob
	batch := make([]*bodyJob, 0, batchBodies)
	for {
		j := next
		next = nil
		if j == nil {
			var ok bool
			if j, ok = <-p.jobs; !ok {
				return
			}
		}
		if j.size > p.batchMax {
			p.store(j)
			continue
		}
		batch = append(batch[:0], j)
		total := j.size
	gather:
		for len(batch) < batchBodies {
			select {
			case k, ok := <-p.jobs:
				if !ok {
					break gather
				}
				if k.size > p.batchMax || total+k.size > batchBytes {
					next = k
					break gather
				}
				batch = append(batch, k)
				total += k.size
			default:
				break gather
			}
		}
		p.storeBatch(batch)
	}
}

// store writes one body as it streams in.
func (p *bodyPipeline) store(j *bodyJob) {
	j.id, j.n, j.created, j.err = p.repo.WriteObjectWith(jobReader{j, p.budget}, composefs.WriteOptions{RecordPrefix: j.prefix, CRC64: true})
	p.done(j)
}

func (p *bodyPipeline) done(j *bodyJob) {
	if j.err != nil {
		p.failed.Store(true)
	}
	close(j.done)
}

// storeBatch writes bodies of one buffer each, together.
func (p *bodyPipeline) storeBatch(batch []*bodyJob) {
	var bodies [batchBodies][]byte
	var opts [batchBodies]composefs.WriteOptions
	var whole [batchBodies]*bodyJob
	n := 0
	for _, j := range batch {
		// start sends a body of at most pipelineChunk whole, or nothing
		// when the tar ended inside it: then no object of what came.
		b, ok := <-j.chunks
		if !ok {
			j.err = io.ErrUnexpectedEOF
			p.done(j)
			continue
		}
		bodies[n], opts[n], whole[n] = b, composefs.WriteOptions{RecordPrefix: j.prefix, CRC64: true}, j
		n++
	}
	if n > 1 {
		batchedBodies.Add(int64(n))
	}
	written := p.repo.WriteObjects(bodies[:n], opts[:n])
	for i, w := range written {
		j := whole[i]
		j.id, j.created, j.err = w.ID, w.Created, w.Err
		if w.Err == nil {
			j.n = j.size
		}
		p.budget.Release(int64(cap(bodies[i])))
		putChunk(bodies[i])
		p.done(j)
	}
}

// start reads a body of size bytes from body and queues it; the job's
// done closes once it is stored or failed. An error here is one of
// reading body; the job then fails too.
func (p *bodyPipeline) start(body io.Reader, size int64, prefix []byte) (*bodyJob, error) {
	// Room for every buffer of a body that fits in the budget; a larger
	// one waits for its worker.
	n := min((size+pipelineChunk-1)/pipelineChunk, pipelineBudget/pipelineChunk)
	j := &bodyJob{size: size, prefix: prefix, chunks: make(chan []byte, n), done: make(chan struct{})}
	pipelinedBodies.Add(1)
	p.jobs <- j
	defer close(j.chunks)
	for left := size; left > 0; {
		n := min(left, pipelineChunk)
		b := getChunk(n)
		// Acquire by capacity: that is what the buffer holds.
		p.budget.Acquire(context.Background(), int64(cap(b)))
		if _, err := io.ReadFull(body, b); err != nil {
			p.budget.Release(int64(cap(b)))
			putChunk(b)
			return j, err
		}
		j.chunks <- b
		left -= n
	}
	return j, nil
}

// close stops the workers once the queued jobs are done. It may be
// called more than once.
func (p *bodyPipeline) close() {
	p.closeOnce.Do(func() { close(p.jobs) })
	p.wg.Wait()
}

// assembler writes a layer's splitstream in tar order: inline bytes as
// they come, and each object once its worker has its id.
type assembler struct {
	ss      *splitstream.Writer
	stats   *LayerStats // the caller's, added to by close
	counts  LayerStats  // the assembler goroutine's own
	merged  bool
	diffID  string
	log     *MemberLog // gets each object id in order, if not nil
	buf     []byte     // inline bytes not yet sent
	ops     chan asmOp
	done    chan struct{}
	err     error
	closing sync.Once
}

type asmOp struct {
	inline []byte
	job    *bodyJob
	name   string // the member, for messages
}

func newAssembler(ss *splitstream.Writer, stats *LayerStats, diffID string, log *MemberLog) *assembler {
	a := &assembler{ss: ss, stats: stats, diffID: diffID, log: log, ops: make(chan asmOp, 256), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for op := range a.ops {
			if a.err != nil {
				if op.job != nil {
					<-op.job.done
				}
				continue
			}
			a.ss.Write(op.inline)
			if op.job == nil {
				continue
			}
			<-op.job.done
			j := op.job
			if j.err != nil {
				a.err = fmt.Errorf("layer %s: member %q: %w", a.diffID, op.name, j.err)
				continue
			}
			if j.created {
				a.counts.ObjectsNew++
				a.counts.BytesNew += j.n
			} else {
				a.counts.ObjectsPresent++
			}
			if a.log != nil {
				a.log.addObject(j.id)
			}
			a.err = a.ss.WriteExternal(j.id, j.n)
		}
	}()
	return a
}

// inline queues bytes that go into the stream as they are.
func (a *assembler) inline(b []byte) { a.buf = append(a.buf, b...) }

// external queues an object, after the inline bytes before it.
func (a *assembler) external(j *bodyJob, name string) {
	a.ops <- asmOp{inline: a.buf, job: j, name: name}
	a.buf = nil
}

// close writes what is left, waits, and adds the objects it counted to
// the caller's stats (only then: the caller may read its stats, e.g. to
// return them with an error, while the assembler still runs); its error
// is the first of a worker's or of the stream. It is called from the
// caller's goroutine, possibly twice.
func (a *assembler) close() error {
	a.closing.Do(func() {
		a.ops <- asmOp{inline: a.buf}
		a.buf = nil
		close(a.ops)
	})
	<-a.done
	if !a.merged {
		a.merged = true
		a.stats.ObjectsNew += a.counts.ObjectsNew
		a.stats.BytesNew += a.counts.BytesNew
		a.stats.ObjectsPresent += a.counts.ObjectsPresent
	}
	return a.err
}
