// Package splitstream reads and writes composefs-rs splitstreams: a file
// such as a layer tar stored as zstd-compressed inline bytes interleaved
// with references to content-addressed objects, so the original can be
// rebuilt byte for byte. The layout is composefs-rs's (doc/splitstream.md
// in that project); a repository written by cfs must be readable there.
package splitstream

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Content types composefs-rs stores in the info section: eight ASCII bytes
// read as a little-endian u64.
const (
	ContentOCIManifest = 0x66696e616d69636f // "ocimanif"
	ContentOCIConfig   = 0x67666e6f6369636f // "ociconfg"
	ContentOCILayer    = 0x726579616c69636f // "ocilayer"
	ContentOCIBlob     = 0x626f6c625f69636f // "oci_blob"
)

var magic = [11]byte{'S', 'p', 'l', 'i', 't', 'S', 't', 'r', 'e', 'a', 'm'}

const (
	headerSize  = 32
	infoSize    = 80
	lgBlockSize = 12
)

// fileRange is a half-open [start, end) byte range of the splitstream file.
type fileRange struct{ start, end uint64 }

func (r fileRange) put(b []byte) {
	binary.LittleEndian.PutUint64(b, r.start)
	binary.LittleEndian.PutUint64(b[8:], r.end)
}

func getRange(b []byte) fileRange {
	return fileRange{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}

func (r fileRange) slice(file []byte, what string) ([]byte, error) {
	if r.end < r.start || r.end > uint64(len(file)) {
		return nil, fmt.Errorf("%s section [%d, %d) lies outside the %d-byte file", what, r.start, r.end, len(file))
	}
	return file[r.start:r.end], nil
}

// header is the fixed 32 bytes at offset 0.
type header struct {
	version     uint8
	algorithm   uint8 // fs-verity kernel id: 1 sha256, 2 sha512
	lgBlockSize uint8
	info        fileRange
}

func (h header) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, magic[:])
	b[11] = h.version
	b[14] = h.algorithm
	b[15] = h.lgBlockSize
	h.info.put(b[16:])
	return b
}

// decodeHeader accepts the current layout and the one bootc 1.15 and
// earlier wrote (magic at 18, info first), which differ only in field
// placement.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("file is %d bytes, shorter than the %d-byte header", len(b), headerSize)
	}
	if [11]byte(b[:11]) == magic {
		return header{version: b[11], algorithm: b[14], lgBlockSize: b[15], info: getRange(b[16:])}, nil
	}
	if [11]byte(b[18:29]) == magic {
		return header{version: b[29], algorithm: b[30], lgBlockSize: b[31], info: getRange(b[0:])}, nil
	}
	return header{}, errors.New("not a splitstream (bad magic)")
}

// info locates the sections; it may grow, so readers take a prefix.
type info struct {
	streamRefs, objectRefs, stream, namedRefs fileRange
	contentType                               uint64
	streamSize                                uint64
}

func (in info) encode() []byte {
	b := make([]byte, infoSize)
	in.streamRefs.put(b[0:])
	in.objectRefs.put(b[16:])
	in.stream.put(b[32:])
	in.namedRefs.put(b[48:])
	binary.LittleEndian.PutUint64(b[64:], in.contentType)
	binary.LittleEndian.PutUint64(b[72:], in.streamSize)
	return b
}

func decodeInfo(b []byte) (info, error) {
	if len(b) < infoSize {
		return info{}, fmt.Errorf("info section is %d bytes, want at least %d", len(b), infoSize)
	}
	return info{
		streamRefs:  getRange(b[0:]),
		objectRefs:  getRange(b[16:]),
		stream:      getRange(b[32:]),
		namedRefs:   getRange(b[48:]),
		contentType: binary.LittleEndian.Uint64(b[64:]),
		streamSize:  binary.LittleEndian.Uint64(b[72:]),
	}, nil
}
