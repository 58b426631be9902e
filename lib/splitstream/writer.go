package splitstream

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"

	"github.com/klauspost/compress/zstd"
)

// Writer builds one splitstream in memory. Only metadata and small files
// go inline, so even a multi-gigabyte layer makes a stream of a few MiB.
type Writer struct {
	algorithm   uint8
	idSize      int
	contentType uint64

	compressed bytes.Buffer
	enc        *zstd.Encoder
	pending    []byte // inline bytes not yet framed: consecutive inline chunks never occur
	size       uint64

	objectRefs refList
	streamRefs refList
	named      map[string]int
	err        error
}

// refList is a list of digests without duplicates, in first-use order.
// A layer refers to an object per file, so the ids are kept back to back
// in one slice and indexed by their first 16 bytes (a digest's prefix);
// ids that share a prefix but differ go to a second, full-id index.
type refList struct {
	ids    []byte
	n      int
	index  map[[16]byte]int32
	others map[string]int32
}

func (l *refList) ensure(id []byte) int {
	var key [16]byte
	copy(key[:], id)
	i, ok := l.index[key]
	if ok {
		size := len(id)
		if bytes.Equal(l.ids[int(i)*size:int(i+1)*size], id) {
			return int(i)
		}
		if j, ok := l.others[string(id)]; ok {
			return int(j)
		}
	}
	n := int32(l.n)
	if !ok {
		if l.index == nil {
			l.index = make(map[[16]byte]int32)
		}
		l.index[key] = n
	} else {
		if l.others == nil {
			l.others = make(map[string]int32)
		}
		l.others[string(id)] = n
	}
	l.ids = append(l.ids, id...)
	l.n++
	return int(n)
}

func (l *refList) bytes() []byte { return l.ids }

// NewWriter starts a splitstream whose object ids are fs-verity digests
// of the given kernel algorithm (1 sha256, 2 sha512).
func NewWriter(algorithm uint8, contentType uint64) (*Writer, error) {
	size, err := idSize(algorithm)
	if err != nil {
		return nil, err
	}
	w := &Writer{algorithm: algorithm, idSize: size, contentType: contentType, named: make(map[string]int)}
	// Level 3 and one frame, as composefs-rs writes; the bytes need not match theirs.
	// Not WithLowerEncoderMem: it writes the same bytes with 8 MiB less
	// history per encoder, but moves the whole window back after every
	// 128 KiB block; in a pull of the 100k image that memmove cost about
	// as much CPU (0.4 s) as the collector saved.
	w.enc, err = zstd.NewWriter(&w.compressed, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return w, nil
}

func idSize(algorithm uint8) (int, error) {
	switch algorithm {
	case 1:
		return 32, nil
	case 2:
		return 64, nil
	}
	return 0, fmt.Errorf("unknown fs-verity algorithm id %d", algorithm)
}

// Write appends inline bytes. It never fails on its own; errors from
// compression surface at Finish.
func (w *Writer) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	w.size += uint64(len(p))
	return len(p), nil
}

func (w *Writer) flushInline() {
	if len(w.pending) == 0 || w.err != nil {
		return
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(-int64(len(w.pending))))
	w.writeCompressed(n[:])
	w.writeCompressed(w.pending)
	w.pending = w.pending[:0]
}

func (w *Writer) writeCompressed(p []byte) {
	if w.err == nil {
		_, w.err = w.enc.Write(p)
	}
}

// WriteExternal appends a reference to an object of size bytes already
// stored under id.
func (w *Writer) WriteExternal(id []byte, size int64) error {
	if len(id) != w.idSize {
		return fmt.Errorf("object id is %d bytes, want %d", len(id), w.idSize)
	}
	if size < 0 {
		return fmt.Errorf("negative external size %d", size)
	}
	w.flushInline()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(w.objectRefs.ensure(id)))
	w.writeCompressed(n[:])
	w.size += uint64(size)
	return w.err
}

// AddNamedRef records that this stream keeps the stream or image id alive
// under name (composefs-rs GC follows these).
func (w *Writer) AddNamedRef(name string, id []byte) error {
	if len(id) != w.idSize {
		return fmt.Errorf("named ref %q: id is %d bytes, want %d", name, len(id), w.idSize)
	}
	if name == "" || bytes.ContainsAny([]byte(name), "\x00") {
		return fmt.Errorf("named ref %q: empty or contains NUL", name)
	}
	w.named[name] = w.streamRefs.ensure(id)
	return nil
}

// Size is the length of the stream the splitstream describes.
func (w *Writer) Size() uint64 { return w.size }

// Finish returns the splitstream file. The writer cannot be used after.
func (w *Writer) Finish() ([]byte, error) {
	w.flushInline()
	if w.err == nil {
		w.err = w.enc.Close()
	}
	if w.err != nil {
		return nil, fmt.Errorf("compressing splitstream: %w", w.err)
	}
	named, err := w.encodeNamedRefs()
	if err != nil {
		return nil, err
	}
	streamRefs, objectRefs := w.streamRefs.bytes(), w.objectRefs.bytes()

	// Sections in composefs-rs's order: header, info, stream refs, object
	// refs, named refs, stream.
	var in info
	at := uint64(headerSize + infoSize)
	place := func(n int) fileRange {
		r := fileRange{at, at + uint64(n)}
		at = r.end
		return r
	}
	in.streamRefs = place(len(streamRefs))
	in.objectRefs = place(len(objectRefs))
	in.namedRefs = place(len(named))
	in.stream = place(w.compressed.Len())
	in.contentType = w.contentType
	in.streamSize = w.size

	out := make([]byte, 0, at)
	out = append(out, header{algorithm: w.algorithm, lgBlockSize: lgBlockSize, info: fileRange{headerSize, headerSize + infoSize}}.encode()...)
	out = append(out, in.encode()...)
	out = append(out, streamRefs...)
	out = append(out, objectRefs...)
	out = append(out, named...)
	out = append(out, w.compressed.Bytes()...)
	return out, nil
}

// encodeNamedRefs writes "<index>:<name>\0" records sorted by name, as
// composefs-rs's BTreeMap orders them.
func (w *Writer) encodeNamedRefs() ([]byte, error) {
	names := make([]string, 0, len(w.named))
	for name := range w.named {
		names = append(names, name)
	}
	sort.Strings(names)
	var plain []byte
	for _, name := range names {
		plain = strconv.AppendInt(plain, int64(w.named[name]), 10)
		plain = append(plain, ':')
		plain = append(plain, name...)
		plain = append(plain, 0)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(plain, nil), nil
}
