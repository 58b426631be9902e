package crc64iso

import (
	"hash/crc64"
	"math/rand/v2"
	"strings"
	"testing"
)

// paths runs f with the carry-less folding on (where the CPU has it) and
// off, the word loop alone.
func paths(t *testing.T, f func(t *testing.T)) {
	saved := haveCLMUL
	defer func() { haveCLMUL = saved }()
	for _, on := range []bool{true, false} {
		if on && !saved {
			t.Log("no PCLMULQDQ here (or purego): the word loop only")
			continue
		}
		haveCLMUL = on
		t.Run(map[bool]string{true: "clmul", false: "words"}[on], f)
	}
}

// TestCRCISO: the CRC-64/ISO equals hash/crc64's for every length and
// alignment, in one write or many, on both paths.
func TestCRCISO(t *testing.T) { paths(t, testCRCISO) }

// TestLongAndSeeded covers the folding loop's lengths (multiples of 64
// and the bytes after them) with a register carried in from a previous
// write.
func TestLongAndSeeded(t *testing.T) { paths(t, testLongAndSeeded) }

func testLongAndSeeded(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 70000)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for _, n := range []int{63, 64, 65, 127, 128, 129, 191, 192, 255, 256, 257, 1000, 4096, 4097, 65536, 65536 + 63, 69999} {
		for _, off := range []int{0, 1, 7, 8, 15} {
			if off+n > len(buf) {
				continue
			}
			p := buf[off : off+n]
			seed := r.Uint64()
			if got, want := Update(seed, p), crc64.Update(seed, table, p); got != want {
				t.Fatalf("len %d offset %d seed %x: %x, want %x", n, off, seed, got, want)
			}
		}
	}
	zeros := make([]byte, 4096)
	if got, want := Update(0, zeros), crc64.Checksum(zeros, table); got != want {
		t.Fatalf("4096 zeros: %x, want %x", got, want)
	}
}

// FuzzCRCISO compares Update with hash/crc64 on any bytes, seed and
// split into two writes.
func FuzzCRCISO(f *testing.F) {
	f.Add([]byte("hello"), uint64(0), uint16(2))
	f.Add(make([]byte, 200), uint64(1)<<63, uint16(64))
	f.Add([]byte(strings.Repeat("0123456789abcdef", 20)), ^uint64(0), uint16(100))
	f.Fuzz(func(t *testing.T, p []byte, seed uint64, cut uint16) {
		c := min(int(cut), len(p))
		want := crc64.Update(crc64.Update(seed, table, p[:c]), table, p[c:])
		if got := Update(Update(seed, p[:c]), p[c:]); got != want {
			t.Fatalf("len %d cut %d seed %x: %x, want %x", len(p), c, seed, got, want)
		}
	})
}

func testCRCISO(t *testing.T) {
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
		k := r.IntN(300)
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
	b.Run("update", func(b *testing.B) {
		for b.Loop() {
			Update(0, buf)
		}
	})
	b.Run("words", func(b *testing.B) {
		for b.Loop() {
			updateWords(0, buf)
		}
	})
	b.Run("crc64", func(b *testing.B) {
		for b.Loop() {
			crc64.Update(0, table, buf)
		}
	})
}
