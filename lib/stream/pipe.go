package stream

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// EntryWriter takes a stream in order: the image record, the entries, and
// Close for the end. A Writer encodes it; a PipeWriter hands it to a
// PipeReader in the same process.
type EntryWriter interface {
	WriteImage(*Image) error
	WriteEntry(*Entry) error
	Close() error
}

// EntryReader yields a checked stream: a Reader decodes one, a PipeReader
// receives one from a PipeWriter. Next returns io.EOF only once the
// producer ended the stream properly; Closed and Line are as Reader's.
type EntryReader interface {
	Image() (*Image, error)
	Next() (*Entry, error)
	Closed() []string
	Line() int
}

var (
	_ EntryWriter = (*Writer)(nil)
	_ EntryReader = (*Reader)(nil)
)

// Pipe connects a producer and a consumer of a stream in one process
// without encoding it: what the writer hands over is what the reader gets,
// checked by the same rules a Writer and a Reader apply (the writer checks
// each record, the reader sees the closed directories a Reader would). As
// with io.Pipe, either side may close it with an error, which the other
// side gets from its next call; a writer that stops without Close leaves
// the reader a truncated stream, as a producer that died would.
//
// WriteEntry hands the entry itself to the reader: the writer must not
// touch it afterwards.
func Pipe() (*PipeReader, *PipeWriter) {
	p := &pipe{items: make(chan pipeItem, 256), wdone: make(chan struct{}), rdone: make(chan struct{})}
	return &PipeReader{p: p}, &PipeWriter{producerRules: newProducerRules(), p: p}
}

type pipe struct {
	items chan pipeItem
	wdone chan struct{} // closed by the writer's CloseWithError
	werr  error
	wonce sync.Once
	rdone chan struct{} // closed by the reader's CloseWithError
	rerr  error
	ronce sync.Once
}

// pipeItem is one record: the image, an entry with the directories its
// arrival closed, or the end (every directory still open).
type pipeItem struct {
	image  *Image
	entry  *Entry
	closed []string
	end    bool
}

// PipeWriter is the producing side of a Pipe.
type PipeWriter struct {
	producerRules
	p   *pipe
	err error
}

func (w *PipeWriter) send(it pipeItem) error {
	select {
	case <-w.p.rdone:
		return w.fail(w.p.rerr)
	default:
	}
	select {
	case w.p.items <- it:
		return nil
	case <-w.p.rdone:
		return w.fail(w.p.rerr)
	}
}

func (w *PipeWriter) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("writing object list: %w", err)
	}
	return w.err
}

// WriteImage hands over the image record; it must come first. A zero
// Version is set to the current one, as Writer does.
func (w *PipeWriter) WriteImage(img *Image) error {
	if w.err != nil {
		return w.err
	}
	rec, err := w.checkImage(img)
	if err != nil {
		return w.fail(err)
	}
	return w.send(pipeItem{image: rec})
}

// WriteEntry hands over one tree entry, in stream order.
func (w *PipeWriter) WriteEntry(e *Entry) error {
	if w.err != nil {
		return w.err
	}
	if err := w.checkEntry(e); err != nil {
		return w.fail(err)
	}
	it := pipeItem{entry: e}
	if len(w.order.closed) > 0 {
		it.closed = append([]string(nil), w.order.closed...)
	}
	return w.send(it)
}

// Close ends the stream, as a Writer's end record does. After an earlier
// error it hands over nothing more and returns that error.
func (w *PipeWriter) Close() error {
	if w.closed || w.err != nil {
		return w.err
	}
	if err := w.checkEnd(); err != nil {
		return w.fail(err)
	}
	w.order.finish()
	return w.send(pipeItem{end: true, closed: append([]string(nil), w.order.closed...)})
}

// CloseWithError stops the stream: the reader's next call returns err
// once it has taken what was handed over before, or, for a nil err, a
// truncated-stream error unless Close ended the stream first.
func (w *PipeWriter) CloseWithError(err error) {
	w.p.wonce.Do(func() {
		w.p.werr = err
		close(w.p.wdone)
	})
}

// PipeReader is the consuming side of a Pipe.
type PipeReader struct {
	p      *pipe
	image  *Image
	closed []string
	line   int
	ended  bool
	err    error
}

// receive returns the next item, or the error the stream stopped with.
// Items handed over before the writer's CloseWithError are still taken.
func (r *PipeReader) receive() (pipeItem, error) {
	if r.err != nil {
		return pipeItem{}, r.err
	}
	select {
	case it := <-r.p.items:
		return it, nil
	default:
	}
	select {
	case it := <-r.p.items:
		return it, nil
	case <-r.p.wdone:
		select {
		case it := <-r.p.items:
			return it, nil
		default:
		}
		err := r.p.werr
		if err == nil {
			err = fmt.Errorf("after line %d: %w", r.line, ErrTruncated)
			r.err = &Error{Err: err}
		} else {
			r.err = &Error{Line: r.line + 1, Err: err}
		}
		return pipeItem{}, r.err
	}
}

func (r *PipeReader) fail(line int, err error) error {
	if r.err == nil {
		r.err = &Error{Line: line, Err: err}
	}
	return r.err
}

// Image waits for the image record and returns it.
func (r *PipeReader) Image() (*Image, error) {
	if r.image != nil || r.err != nil {
		return r.image, r.err
	}
	it, err := r.receive()
	if err != nil {
		if r.line == 0 && errors.Is(err, ErrTruncated) {
			r.err = &Error{Err: fmt.Errorf("empty stream, no image record: %w", ErrTruncated)}
		}
		return nil, r.err
	}
	r.line++
	if it.image == nil {
		return nil, r.fail(r.line, fmt.Errorf("the first record must be of type %q", TypeImage))
	}
	r.image = it.image
	return r.image, nil
}

// Next returns the next tree entry, and io.EOF once the writer closed the
// stream; any other error is final.
func (r *PipeReader) Next() (*Entry, error) {
	if _, err := r.Image(); err != nil {
		return nil, err
	}
	if r.ended {
		return nil, io.EOF
	}
	it, err := r.receive()
	if err != nil {
		return nil, err
	}
	r.line++
	r.closed = it.closed
	if it.end {
		r.ended = true
		return nil, io.EOF
	}
	if it.entry == nil {
		return nil, r.fail(r.line, errors.New("a second image record"))
	}
	return it.entry, nil
}

// Closed lists the directories that the last call to Next finished,
// deepest first, as Reader's Closed does.
func (r *PipeReader) Closed() []string { return r.closed }

// Line is the number of the record last received, counted as the lines of
// the encoded stream would be (the image record is line 1).
func (r *PipeReader) Line() int { return r.line }

// CloseWithError stops the stream from the reading side: the writer's
// next call returns err (io.ErrClosedPipe for nil).
func (r *PipeReader) CloseWithError(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	r.p.ronce.Do(func() {
		r.p.rerr = err
		close(r.p.rdone)
	})
}
