package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"
)

// maxInlineChunk bounds one inline chunk so a hostile header cannot make
// the reader allocate without limit.
const maxInlineChunk = 1 << 30

// Reader walks the chunks of a splitstream held in memory.
type Reader struct {
	ContentType uint64
	StreamSize  uint64
	ObjectRefs  [][]byte          // objects referenced by external chunks
	StreamRefs  [][]byte          // ids named by NamedRefs
	NamedRefs   map[string][]byte // name -> stream or image id

	dec  *zstd.Decoder
	seen uint64 // stream bytes returned so far
}

// Chunk is one piece of the stream: inline bytes, or the id of an object
// whose whole content comes next.
type Chunk struct {
	Inline   []byte
	External []byte
}

// NewReader parses a splitstream whose ids use the given fs-verity
// algorithm (1 sha256, 2 sha512).
func NewReader(file []byte, algorithm uint8) (*Reader, error) {
	size, err := idSize(algorithm)
	if err != nil {
		return nil, err
	}
	h, err := decodeHeader(file)
	if err != nil {
		return nil, err
	}
	switch {
	case h.version != 0:
		return nil, fmt.Errorf("splitstream version %d is not supported", h.version)
	case h.algorithm != algorithm:
		return nil, fmt.Errorf("splitstream uses fs-verity algorithm %d, the repository %d", h.algorithm, algorithm)
	case h.lgBlockSize != lgBlockSize:
		return nil, fmt.Errorf("splitstream fs-verity block size 2^%d is not supported", h.lgBlockSize)
	}
	infoBytes, err := h.info.slice(file, "info")
	if err != nil {
		return nil, err
	}
	in, err := decodeInfo(infoBytes)
	if err != nil {
		return nil, err
	}
	r := &Reader{ContentType: in.contentType, StreamSize: in.streamSize}
	if r.StreamRefs, err = readIDs(file, in.streamRefs, size, "stream refs"); err != nil {
		return nil, err
	}
	if r.ObjectRefs, err = readIDs(file, in.objectRefs, size, "object refs"); err != nil {
		return nil, err
	}
	namedBytes, err := in.namedRefs.slice(file, "named refs")
	if err != nil {
		return nil, err
	}
	if r.NamedRefs, err = decodeNamedRefs(namedBytes, r.StreamRefs); err != nil {
		return nil, err
	}
	stream, err := in.stream.slice(file, "stream")
	if err != nil {
		return nil, err
	}
	r.dec, err = zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<31))
	if err != nil {
		return nil, fmt.Errorf("stream section: %w", err)
	}
	return r, nil
}

func readIDs(file []byte, r fileRange, size int, what string) ([][]byte, error) {
	b, err := r.slice(file, what)
	if err != nil {
		return nil, err
	}
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%s section is %d bytes, not a multiple of the %d-byte id", what, len(b), size)
	}
	// A copy of just the ids: callers keep them (a tree keeps one per
	// file) and must not keep the whole stream alive through them.
	b = bytes.Clone(b)
	ids := make([][]byte, 0, len(b)/size)
	for i := 0; i < len(b); i += size {
		ids = append(ids, b[i:i+size:i+size])
	}
	return ids, nil
}

func decodeNamedRefs(section []byte, streamRefs [][]byte) (map[string][]byte, error) {
	refs := make(map[string][]byte)
	if len(section) == 0 {
		return refs, nil
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(section, nil)
	if err != nil {
		return nil, fmt.Errorf("named refs: %w", err)
	}
	for len(plain) > 0 {
		end := bytes.IndexByte(plain, 0)
		if end < 0 {
			return nil, errors.New("named refs: trailing record without NUL")
		}
		record := string(plain[:end])
		plain = plain[end+1:]
		idxText, name, ok := cutColon(record)
		if !ok {
			return nil, fmt.Errorf("named ref %q has no colon", record)
		}
		idx, err := strconv.ParseUint(idxText, 10, 32)
		if err != nil || idx >= uint64(len(streamRefs)) {
			return nil, fmt.Errorf("named ref %q: index %q is not one of the %d stream refs", name, idxText, len(streamRefs))
		}
		refs[name] = streamRefs[idx]
	}
	return refs, nil
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// Next returns the next chunk, or io.EOF at the end of the stream.
func (r *Reader) Next() (Chunk, error) {
	var n [8]byte
	if _, err := io.ReadFull(r.dec, n[:]); err != nil {
		if err == io.EOF {
			return Chunk{}, io.EOF
		}
		return Chunk{}, fmt.Errorf("splitstream chunk header: %w", err)
	}
	v := int64(binary.LittleEndian.Uint64(n[:]))
	if v >= 0 {
		if v >= int64(len(r.ObjectRefs)) {
			return Chunk{}, fmt.Errorf("external chunk refers to object %d of %d", v, len(r.ObjectRefs))
		}
		return Chunk{External: r.ObjectRefs[v]}, nil
	}
	size := uint64(-v)
	if v == -1<<63 || size > maxInlineChunk || r.seen+size > r.StreamSize {
		return Chunk{}, fmt.Errorf("inline chunk of %d bytes exceeds the stream's declared size %d", size, r.StreamSize)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r.dec, buf); err != nil {
		return Chunk{}, fmt.Errorf("inline chunk of %d bytes: %w", size, err)
	}
	r.seen += size
	return Chunk{Inline: buf}, nil
}

// Close releases the decoder.
func (r *Reader) Close() { r.dec.Close() }

// Reassemble writes the original stream to w, opening each external
// object with open. It checks that the result has the declared size.
func (r *Reader) Reassemble(w io.Writer, open func(id []byte) (io.ReadCloser, error)) (int64, error) {
	var total int64
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, err
		}
		if c.Inline != nil {
			n, err := w.Write(c.Inline)
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		obj, err := open(c.External)
		if err != nil {
			return total, err
		}
		n, err := io.Copy(w, obj)
		obj.Close()
		total += n
		if err != nil {
			return total, err
		}
	}
	if uint64(total) != r.StreamSize {
		return total, fmt.Errorf("reassembled %d bytes, the splitstream declares %d", total, r.StreamSize)
	}
	return total, nil
}
