package crc64iso

import (
	"hash/crc64"
	"math/rand/v2"
	"testing"
)

// TestCRCISO: the word-at-a-time CRC-64/ISO equals hash/crc64's for every
// length and alignment, in one write or many.
func TestCRCISO(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 5000)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for n := 0; n < 300; n++ {
		for off := 0; off < 8; off++ {
			p := buf[off : off+n]
			want := crc64.Checksum(p, table)
			if got := Update(0, p); got != want {
				t.Fatalf("len %d offset %d: %x, want %x", n, off, got, want)
			}
		}
	}
	h, want := New(), crc64.New(table)
	for range 2000 {
		k := r.IntN(70)
		p := buf[r.IntN(len(buf)-k):][:k]
		h.Write(p)
		want.Write(p)
		if h.Sum64() != want.Sum64() {
			t.Fatalf("after pieces: %x, want %x", h.Sum64(), want.Sum64())
		}
	}
	h.Reset()
	if h.Write(buf); h.Sum64() != crc64.Checksum(buf, table) || Checksum(buf) != h.Sum64() {
		t.Fatal("after Reset")
	}
}

func BenchmarkCRCISO(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.Run("words", func(b *testing.B) {
		for b.Loop() {
			Update(0, buf)
		}
	})
	b.Run("crc64", func(b *testing.B) {
		for b.Loop() {
			crc64.Update(0, table, buf)
		}
	})
}
