// Package crc64iso computes the CRC-64/ISO that tar-split records for each
// file body of a layer (and containers-storage checks in Store.Diff), a
// word at a time.
//
// The polynomial x^64 + x^4 + x^3 + x + 1 is so sparse that folding 64
// bits in takes a few shifts instead of eight table lookups: hash/crc64
// manages about 1 GB/s, a third of what a layer's sha256 does, and every
// body is checked or recorded with it.
//
// In the reflected form crc64 uses, running the bitwise algorithm
// (c = c>>1 ^ poly if c&1) 64 times on c = crc ^ word feeds back the bits
// f = c ^ c<<60 ^ c<<61 ^ c<<63 (feedback bits 60..63 also depend on the
// ones fed back 60..64 steps earlier, all of them among bits 0..3 of c),
// and leaves f's feedback as f ^ f>>1 ^ f>>3 ^ f>>4, one term per set bit
// of the reflected polynomial 0xD800000000000000 (bits 63, 62, 60, 59).
// TestCRCISO checks it against hash/crc64.
package crc64iso

import (
	"encoding/binary"
	"hash/crc64"
)

// Digest is a running CRC-64/ISO (a hash.Hash64 without the byte-slice
// Sum, which nobody here needs).
type Digest struct{ crc uint64 }

var table = crc64.MakeTable(crc64.ISO)

// New starts a CRC.
func New() *Digest { return &Digest{} }

func (c *Digest) Write(p []byte) (int, error) {
	c.crc = Update(c.crc, p)
	return len(p), nil
}

// Sum64 is the CRC of everything written since the start or Reset.
func (c *Digest) Sum64() uint64 { return c.crc }

// Reset starts over.
func (c *Digest) Reset() { c.crc = 0 }

// Checksum is the CRC of p.
func Checksum(p []byte) uint64 { return Update(0, p) }

// Update is crc64.Update(crc, ISO table, p).
func Update(crc uint64, p []byte) uint64 { return update(crc, p) }

// updateWords is Update a word at a time, in Go.
func updateWords(crc uint64, p []byte) uint64 {
	n := len(p) &^ 7
	if n > 0 {
		crc = ^crc
		for i := 0; i < n; i += 8 {
			v := crc ^ binary.LittleEndian.Uint64(p[i:])
			f := v ^ v<<60 ^ v<<61 ^ v<<63
			crc = f ^ f>>1 ^ f>>3 ^ f>>4
		}
		crc = ^crc
	}
	return crc64.Update(crc, table, p[n:])
}
