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

// Error is a problem with one line of a stream.
type Error struct {
	Line int // 1-based; 0 when the problem is the stream as a whole
	Err  error
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return "object list: " + e.Err.Error()
	}
	return fmt.Sprintf("object list line %d: %v", e.Line, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTruncated is wrapped by the error for a stream that stops before its
// end record: the producer died, and nothing read from it may be committed.
var ErrTruncated = errors.New("stream ends without an end record (did the producing command fail?)")

// Reader reads and validates a stream. Nothing it returns may be made
// durable before Next has returned io.EOF: only then is the end record
// checked.
type Reader struct {
	in      *bufio.Reader
	sum     hash.Hash
	bytes   int64
	line    int
	image   *Image
	order   *treeOrder
	end     *End
	err     error
	lineBuf []byte
	// unsealed: the stream has no end record yet (Seal); its end is EOF.
	unsealed bool
}

// NewReader returns a Reader for r.
func NewReader(r io.Reader) *Reader {
	return &Reader{in: bufio.NewReaderSize(r, 1<<16), sum: sha256.New(), order: newTreeOrder()}
}

// Image reads the image record if it has not been read yet and returns it.
func (r *Reader) Image() (*Image, error) {
	if r.image != nil || r.err != nil {
		return r.image, r.err
	}
	data, err := r.readLine(MaxImageLine)
	if err == io.EOF {
		// Nothing at all is what a producer that failed before its first
		// record leaves: as truncated as a list cut after it.
		if r.unsealed {
			return nil, r.fail(0, errors.New("empty stream, no image record"))
		}
		return nil, r.fail(0, fmt.Errorf("empty stream, no image record: %w", ErrTruncated))
	}
	if err != nil {
		return nil, err
	}
	if err := checkLine(data); err != nil {
		return nil, r.fail(r.line, err)
	}
	var head struct {
		Type Type `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, r.fail(r.line, fmt.Errorf("not a JSON record: %v", err))
	}
	if head.Type != TypeImage {
		return nil, r.fail(r.line, fmt.Errorf("the first record must be of type %q, got %q", TypeImage, head.Type))
	}
	img := new(Image)
	if err := json.Unmarshal(data, img); err != nil {
		return nil, r.fail(r.line, fmt.Errorf("image record: %v", err))
	}
	if err := CheckImage(img); err != nil {
		return nil, r.fail(r.line, err)
	}
	r.account(data)
	r.image = img
	return img, nil
}

// Next returns the next tree entry. After the last one it checks the end
// record and returns io.EOF; any other error is final.
func (r *Reader) Next() (*Entry, error) {
	if _, err := r.Image(); err != nil {
		return nil, err
	}
	if r.end != nil {
		return nil, io.EOF
	}
	data, err := r.readLine(MaxEntryLine)
	if err == io.EOF && r.unsealed {
		if r.order.count == 0 {
			return nil, r.fail(0, errors.New("no entries after the image record"))
		}
		r.order.finish()
		r.end = r.endRecord()
		return nil, io.EOF
	}
	if err == io.EOF {
		return nil, r.fail(0, fmt.Errorf("after line %d: %w", r.line, ErrTruncated))
	}
	if err != nil {
		return nil, err
	}
	e := new(Entry)
	if decodeEntry(data, e) {
		// The common line, checked and decoded in one pass.
		return r.entry(data, e)
	}
	*e = Entry{}
	if err := checkLine(data); err != nil {
		return nil, r.fail(r.line, err)
	}
	t := TypeEnd
	if err := unmarshalEntry(data, e); err == nil {
		t = e.Type
	} else if t = peekType(data); t != TypeEnd && t != TypeImage {
		return nil, r.fail(r.line, fmt.Errorf("not a valid record: %v", err))
	}
	switch t {
	case TypeEnd:
		if r.unsealed {
			return nil, r.fail(r.line, errors.New("the list already has an end record: it is sealed"))
		}
		return nil, r.finish(data)
	case TypeImage:
		return nil, r.fail(r.line, errors.New("a second image record"))
	}
	return r.entry(data, e)
}

// entry checks a decoded entry line and accounts for it.
func (r *Reader) entry(data []byte, e *Entry) (*Entry, error) {
	r.account(data)
	if err := checkEntryFields(e); err != nil {
		return nil, r.fail(r.line, err)
	}
	if err := r.order.add(e); err != nil {
		return nil, r.fail(r.line, err)
	}
	return e, nil
}

// unmarshalEntry is json.Unmarshal(data, e). For an object it calls
// e.UnmarshalJSON directly, which validates and decodes the line itself:
// json.Unmarshal would first validate the whole line and then scan the
// object again to hand it over, two passes of the four a line cost.
func unmarshalEntry(data []byte, e *Entry) error {
	if len(data) > 0 && data[0] == '{' {
		return e.UnmarshalJSON(data)
	}
	return json.Unmarshal(data, e)
}

func peekType(data []byte) Type {
	var head struct {
		Type Type `json:"type"`
	}
	if json.Unmarshal(data, &head) != nil {
		return ""
	}
	return head.Type
}

// endRecord is the end record of what has been read so far.
func (r *Reader) endRecord() *End {
	return &End{Entries: r.order.count, Bytes: r.bytes, SHA256: hex.EncodeToString(r.sum.Sum(nil))}
}

func (r *Reader) finish(data []byte) error {
	sumBefore := r.sum.Sum(nil)
	end := new(End)
	if err := json.Unmarshal(data, end); err != nil {
		return r.fail(r.line, fmt.Errorf("end record: %v", err))
	}
	switch {
	case end.Entries != r.order.count:
		return r.fail(r.line, fmt.Errorf("end record counts %d entries, the stream has %d", end.Entries, r.order.count))
	case end.Bytes != r.bytes:
		return r.fail(r.line, fmt.Errorf("end record counts %d bytes, the stream has %d", end.Bytes, r.bytes))
	case end.SHA256 != hex.EncodeToString(sumBefore):
		return r.fail(r.line, fmt.Errorf("end record sha256 %s does not match the stream's %x", end.SHA256, sumBefore))
	}
	if _, err := r.in.ReadByte(); err == nil {
		return r.fail(r.line+1, errors.New("data after the end record"))
	} else if err != io.EOF {
		return r.fail(r.line+1, err)
	}
	r.order.finish()
	r.end = end
	return io.EOF
}

// Closed lists the directories that the last call to Next finished,
// deepest first: every entry below them has been returned. After io.EOF
// it lists every directory still open, ending with "/". A consumer that
// builds each directory as it closes needs memory for one branch only.
func (r *Reader) Closed() []string { return r.order.closed }

// End returns the end record once Next has returned io.EOF, nil before.
func (r *Reader) End() *End { return r.end }

// Line is the number of the line last read.
func (r *Reader) Line() int { return r.line }

func (r *Reader) fail(line int, err error) error {
	if r.err == nil {
		r.err = &Error{Line: line, Err: err}
	}
	return r.err
}

// readLine returns the next newline-terminated line without its newline,
// refusing lines longer than limit and an unterminated last line.
func (r *Reader) readLine(limit int) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.lineBuf = r.lineBuf[:0]
	for {
		chunk, err := r.in.ReadSlice('\n')
		r.lineBuf = append(r.lineBuf, chunk...)
		if len(r.lineBuf) > limit+1 {
			return nil, r.fail(r.line+1, fmt.Errorf("line is longer than %d bytes", limit))
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(r.lineBuf) == 0 {
				return nil, io.EOF
			}
			return nil, r.fail(r.line+1, fmt.Errorf("last line has no newline: %w", ErrTruncated))
		}
		return nil, r.fail(r.line+1, err)
	}
	r.line++
	return r.lineBuf[:len(r.lineBuf)-1], nil
}

// account adds a line read by readLine, which must be the last one read,
// to what the end record has to match.
func (r *Reader) account(line []byte) {
	r.sum.Write(line[:len(line)+1]) // with its newline
	r.bytes += int64(len(line)) + 1
}

// ReadAll reads and validates a whole stream into memory. Tools that
// process a tree use Next and Closed instead; this is for small lists and
// tests.
func ReadAll(in io.Reader) (*Image, []*Entry, error) {
	r := NewReader(in)
	img, err := r.Image()
	if err != nil {
		return nil, nil, err
	}
	var entries []*Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return img, entries, nil
		}
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
}
