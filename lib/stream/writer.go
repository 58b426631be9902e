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
	out    *bufio.Writer
	sum    hash.Hash
	bytes  int64
	image  bool
	order  *treeOrder
	err    error
	closed bool
	line   []byte // reused by WriteEntry
}

// NewWriter returns a Writer to w. It buffers; Close flushes.
func NewWriter(w io.Writer) *Writer {
	return &Writer{out: bufio.NewWriterSize(w, 1<<16), sum: sha256.New(), order: newTreeOrder()}
}

// WriteImage writes the image record; it must come first. A zero Version
// is set to the current one.
func (w *Writer) WriteImage(img *Image) error {
	if w.err != nil {
		return w.err
	}
	if w.image {
		return w.fail(errors.New("image record written twice"))
	}
	rec := *img
	if rec.Version == 0 {
		rec.Version = Version
	}
	if err := CheckImage(&rec); err != nil {
		return w.fail(err)
	}
	w.image = true
	return w.writeRecord(struct {
		Type Type `json:"type"`
		*Image
	}{TypeImage, &rec})
}

// WriteEntry writes one tree entry, in stream order.
func (w *Writer) WriteEntry(e *Entry) error {
	if w.err != nil {
		return w.err
	}
	if !w.image {
		return w.fail(errors.New("entry written before the image record"))
	}
	if err := checkEntryFields(e); err != nil {
		return w.fail(err)
	}
	if err := w.order.add(e); err != nil {
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
	w.closed = true
	if !w.image {
		return w.fail(errors.New("closing a stream that has no image record"))
	}
	if w.order.count == 0 {
		return w.fail(errors.New("closing a stream that has no entries"))
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
