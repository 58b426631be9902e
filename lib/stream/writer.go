package stream

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Writer writes a stream and holds producers to the same rules the Reader
// enforces, so a bad stream fails where it is made. The end record is
// written only by Close and only if every earlier write succeeded: a
// producer that fails part-way leaves a stream every reader refuses.
type Writer struct {
	producerRules
	out   *bufio.Writer
	sum   hash.Hash
	bytes int64
	err   error
	line  []byte // reused by WriteEntry
}

// NewWriter returns a Writer to w. It buffers; Close flushes.
func NewWriter(w io.Writer) *Writer {
	return &Writer{producerRules: newProducerRules(), out: bufio.NewWriterSize(w, 1<<16), sum: sha256.New()}
}

// producerRules hold a producer to the order every reader checks (the
// image record first, entries in tree order, the end last, after at
// least one entry); Writer and PipeWriter both apply them.
type producerRules struct {
	order  *treeOrder
	image  bool
	closed bool
}

func newProducerRules() producerRules { return producerRules{order: newTreeOrder()} }

// checkImage returns the image record to write: img with a zero Version
// set to the current one, checked.
func (r *producerRules) checkImage(img *Image) (*Image, error) {
	if r.image {
		return nil, errors.New("image record written twice")
	}
	rec := *img
	if rec.Version == 0 {
		rec.Version = Version
	}
	if err := CheckImage(&rec); err != nil {
		return nil, err
	}
	r.image = true
	return &rec, nil
}

// checkEntry checks e and adds it to the tree order.
func (r *producerRules) checkEntry(e *Entry) error {
	if !r.image {
		return errors.New("entry written before the image record")
	}
	if r.closed {
		return errors.New("entry written after the end")
	}
	if err := checkEntryFields(e); err != nil {
		return err
	}
	return r.order.add(e)
}

// checkEnd ends the stream; it is called once.
func (r *producerRules) checkEnd() error {
	r.closed = true
	if !r.image {
		return errors.New("closing a stream that has no image record")
	}
	if r.order.count == 0 {
		return errors.New("closing a stream that has no entries")
	}
	return nil
}

// WriteImage writes the image record; it must come first. A zero Version
// is set to the current one.
func (w *Writer) WriteImage(img *Image) error {
	if w.err != nil {
		return w.err
	}
	rec, err := w.checkImage(img)
	if err != nil {
		return w.fail(err)
	}
	return w.writeRecord(struct {
		Type Type `json:"type"`
		*Image
	}{TypeImage, rec})
}

// WriteEntry writes one tree entry, in stream order.
func (w *Writer) WriteEntry(e *Entry) error {
	if w.err != nil {
		return w.err
	}
	if err := w.checkEntry(e); err != nil {
		return w.fail(err)
	}
	// encodeEntry writes what json.Marshal(e) would, without its
	// reflection, into a buffer kept for the next entry.
	w.line = append(encodeEntry(w.line[:0], e), '\n')
	return w.writeRaw(w.line)
}

// Close writes the end record and flushes. It does not close the
// underlying writer. After an earlier error it writes nothing more and
// returns that error.
func (w *Writer) Close() error {
	if w.closed || w.err != nil {
		return w.err
	}
	if err := w.checkEnd(); err != nil {
		return w.fail(err)
	}
	if err := w.writeRecord(endJSON(End{Entries: w.order.count, Bytes: w.bytes, SHA256: hex.EncodeToString(w.sum.Sum(nil))})); err != nil {
		return err
	}
	if err := w.out.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *Writer) writeRecord(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return w.fail(err)
	}
	return w.writeLine(line)
}

func (w *Writer) writeLine(line []byte) error {
	return w.writeRaw(append(line, '\n'))
}

// writeRaw writes a line that ends with its newline.
func (w *Writer) writeRaw(line []byte) error {
	w.sum.Write(line)
	w.bytes += int64(len(line))
	if _, err := w.out.Write(line); err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("writing object list: %w", err)
	}
	return w.err
}

// endJSON is the wire form of an end record.
func endJSON(e End) any {
	return struct {
		Type Type `json:"type"`
		End
	}{TypeEnd, e}
}
