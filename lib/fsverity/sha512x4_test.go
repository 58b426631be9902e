package fsverity

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
)

// bothPaths runs f with the four-lane SHA-512 (where the CPU has it) and
// with it switched off, so that this machine tests both ways of hashing.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("multibuffer", func(t *testing.T) {
		if !haveSHA512x4 {
			t.Skip("no four-lane SHA-512 on this CPU")
		}
		f(t)
	})
	t.Run("oneblock", func(t *testing.T) {
		saved := haveSHA512x4
		haveSHA512x4 = false
		defer func() { haveSHA512x4 = saved }()
		f(t)
	})
}

// multiBufferSizes are the file sizes where batching four leaves can go
// wrong: fewer than three blocks (never batched), three (batched with an
// unused lane), four and five, a partial block after a batch, and level
// blocks that fill (64 SHA-512 hashes) in the middle of a batch or at its
// end, up to three levels.
var multiBufferSizes = func() []int {
	const b = BlockSize
	sizes := []int{0, 1, 4095, 4096, 4097}
	for k := 2; k <= 9; k++ {
		sizes = append(sizes, k*b-1, k*b, k*b+1)
	}
	for _, k := range []int{63, 64, 65, 66, 67, 127, 128, 129, 130, 131, 64 * 64, 64*64 + 1, 64*64 + 3} {
		sizes = append(sizes, k*b-1, k*b, k*b+1)
	}
	return sizes
}()

// TestMultiBufferDigests compares whole-file SHA-512 digests, in one Write
// and in awkward chunks, with referenceDigest on both hashing paths.
func TestMultiBufferDigests(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		for i, size := range multiBufferSizes {
			data := randomBytes(size, uint64(1000+i))
			want := referenceDigest(data, SHA512)
			h := New(SHA512)
			h.Write(data)
			if got := h.Sum(nil); !bytes.Equal(got, want) {
				t.Errorf("%d bytes in one write: %x, want %x", size, got, want)
			}
			for _, step := range []int{3*BlockSize + 1, 5*BlockSize - 7, 7 * BlockSize} {
				if got := writeChunked(SHA512, data, func() int { return step }); !bytes.Equal(got, want) {
					t.Errorf("%d bytes in %d-byte writes: %x, want %x", size, step, got, want)
				}
			}
		}
	})
}

// TestMultiBufferMatchesFsverityTool checks DigestFile against `fsverity
// digest` on the same sizes, on both paths.
func TestMultiBufferMatchesFsverityTool(t *testing.T) {
	tool := testfs.RequireTool(t, "fsverity")
	dir := t.TempDir()
	var paths []string
	for i, size := range multiBufferSizes {
		path := filepath.Join(dir, fmt.Sprintf("f%d-%d", i, size))
		if err := os.WriteFile(path, randomBytes(size, uint64(2000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	wants := make([][]byte, len(paths))
	for i, path := range paths {
		wants[i] = toolDigest(t, tool, path, SHA512)
	}
	bothPaths(t, func(t *testing.T) {
		for i, path := range paths {
			got, err := DigestFile(path, SHA512)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wants[i]) {
				t.Errorf("%s: DigestFile %x, fsverity digest %x", filepath.Base(path), got, wants[i])
			}
		}
	})
}

// TestMultiBufferNoAllocs checks that batching keeps Write allocation-free.
func TestMultiBufferNoAllocs(t *testing.T) {
	chunk := randomBytes(1<<20+3*BlockSize, 3)
	bothPaths(t, func(t *testing.T) {
		h := New(SHA512)
		h.Write(chunk)
		if allocs := testing.AllocsPerRun(20, func() { h.Write(chunk) }); allocs != 0 {
			t.Errorf("Write allocates %.1f times per MiB", allocs)
		}
	})
}

// FuzzSHA512x4 compares the four-lane SHA-512 with crypto/sha512 on four
// blocks made from the fuzz input: lane i is the input repeated, with byte
// i of every copy flipped by the lane's own mask, so lanes are equal when
// the masks are zero and differ otherwise.
func FuzzSHA512x4(f *testing.F) {
	f.Add([]byte{0}, byte(0), byte(0), byte(0), byte(0))
	f.Add([]byte("abc"), byte(1), byte(2), byte(3), byte(4))
	f.Add(randomBytes(4096, 3), byte(0xff), byte(0), byte(0x80), byte(0x7f))
	f.Fuzz(func(t *testing.T, unit []byte, m0, m1, m2, m3 byte) {
		if !haveSHA512x4 {
			t.Skip("no four-lane SHA-512 on this CPU")
		}
		if len(unit) == 0 {
			unit = []byte{0}
		}
		var blocks [4][]byte
		for lane, m := range []byte{m0, m1, m2, m3} {
			b := make([]byte, 0, BlockSize+len(unit))
			for len(b) < BlockSize {
				b = append(b, unit...)
			}
			for i := lane; i < BlockSize; i += len(unit) {
				b[i] ^= m
			}
			blocks[lane] = b[:BlockSize]
		}
		checkSum4(t, blocks)
	})
}

// checkSum4 compares sum4SHA512 with crypto/sha512 on four blocks.
func checkSum4(t testing.TB, blocks [4][]byte) {
	t.Helper()
	var got [4][64]byte
	sum4SHA512(&got, &blocks)
	for i, b := range blocks {
		if want := sha512.Sum512(b[:BlockSize]); got[i] != want {
			t.Fatalf("lane %d: %x, want %x", i, got[i], want)
		}
	}
}

func TestSum4SHA512(t *testing.T) {
	if !haveSHA512x4 {
		t.Skip("no four-lane SHA-512 on this CPU")
	}
	rnd := func(seed uint64) []byte { return randomBytes(BlockSize, seed) }
	fill := func(c byte) []byte { return bytes.Repeat([]byte{c}, BlockSize) }
	same := rnd(5)
	cases := map[string][4][]byte{
		"random":       {rnd(1), rnd(2), rnd(3), rnd(4)},
		"equal lanes":  {same, same, same, same},
		"edge values":  {fill(0), fill(0xff), fill(0x80), fill(0x7f)},
		"one differs":  {same, same, rnd(6), same},
		"zeros random": {fill(0), rnd(7), fill(0), rnd(8)},
	}
	// Blocks that differ from each other in a single bit, in every lane.
	for bit := range 3 {
		var b [4][]byte
		for i := range b {
			b[i] = bytes.Clone(same)
			b[i][(bit*1231+i*977)%BlockSize] ^= 1 << (i + bit)
		}
		cases["bitflip"+string(rune('0'+bit))] = b
	}
	for name, blocks := range cases {
		t.Run(name, func(t *testing.T) { checkSum4(t, blocks) })
	}
	// Unaligned blocks inside one buffer, as Write hands them over.
	buf := randomBytes(4*BlockSize+3, 9)
	checkSum4(t, [4][]byte{buf[1:], buf[1+BlockSize:], buf[3+2*BlockSize:], buf[2+BlockSize:]})
}

// BenchmarkSum4SHA512 and BenchmarkSum1SHA512 compare four blocks hashed in
// one pass with four blocks hashed one after the other by crypto/sha512.
func BenchmarkSum4SHA512(b *testing.B) {
	if !haveSHA512x4 {
		b.Skip("no four-lane SHA-512 on this CPU")
	}
	buf := randomBytes(4*BlockSize, 1)
	blocks := [4][]byte{buf, buf[BlockSize:], buf[2*BlockSize:], buf[3*BlockSize:]}
	var out [4][64]byte
	b.SetBytes(4 * BlockSize)
	for b.Loop() {
		sum4SHA512(&out, &blocks)
	}
}

func BenchmarkSum1SHA512(b *testing.B) {
	buf := randomBytes(4*BlockSize, 1)
	h := sha512.New()
	var out [64]byte
	b.SetBytes(4 * BlockSize)
	for b.Loop() {
		for i := range 4 {
			h.Reset()
			h.Write(buf[i*BlockSize : (i+1)*BlockSize])
			h.Sum(out[:0])
		}
	}
}
