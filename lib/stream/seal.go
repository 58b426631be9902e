package stream

import (
	"bufio"
	"encoding/json"
	"io"
)

// Seal copies a list that has no end record yet from in to out, checking
// every line as a Reader does, and appends the end record. It is how a
// producer that is not written in Go (a shell script emitting JSON lines)
// makes a list the cfs tools accept: the lines pass through byte for byte,
// and the end record counts and hashes exactly those bytes.
//
// A line that fails a check stops the copy with the Reader's error, which
// names the line; what was written before it carries no end record, so
// every reader refuses it.
func Seal(out io.Writer, in io.Reader) (*End, error) {
	r := NewReader(in)
	r.unsealed = true
	w := bufio.NewWriterSize(out, 1<<16)
	if _, err := r.Image(); err != nil {
		return nil, err
	}
	if _, err := w.Write(r.lineBuf); err != nil { // the line and its newline
		return nil, err
	}
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(r.lineBuf); err != nil {
			return nil, err
		}
	}
	line, err := json.Marshal(endJSON(*r.end))
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return nil, err
	}
	return r.end, w.Flush()
}
