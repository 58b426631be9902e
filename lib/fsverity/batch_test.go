package fsverity

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
)

// batchSizes are the sizes where hashing files together can go wrong:
// empty, one byte, around one block, a partial block after full ones, a
// level-1 block that is exactly full (BatchMax) and the first size past
// it, which takes the Hasher.
func batchSizes(alg Algorithm) []int {
	const b = BlockSize
	limit := BatchMax(alg)
	sizes := []int{0, 1, 65, b - 1, b, b + 1, 2*b - 1, 2 * b, 3*b + 5, 4 * b, 5*b - 3}
	return append(sizes, limit-b, limit-1, limit, limit+1, limit+b+7)
}

// TestDigestFilesShapes compares DigestFiles with referenceDigest for every
// boundary size, alone and in batches of one to nine files that mix them,
// for both algorithms and on both SHA-512 paths.
func TestDigestFilesShapes(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		for _, alg := range []Algorithm{SHA256, SHA512} {
			sizes := batchSizes(alg)
			var files [][]byte
			var want [][]byte
			for i, size := range sizes {
				data := randomBytes(size, uint64(300+i))
				files = append(files, data)
				want = append(want, referenceDigest(data, alg))
			}
			rng := rand.New(rand.NewPCG(uint64(alg), 7))
			for round := range 200 {
				n := 1 + rng.IntN(9)
				var batch, wantBatch [][]byte
				for range n {
					k := rng.IntN(len(files))
					batch = append(batch, files[k])
					wantBatch = append(wantBatch, want[k])
				}
				got := DigestFiles(alg, batch)
				if len(got) != n {
					t.Fatalf("%v round %d: %d digests for %d files", alg, round, len(got), n)
				}
				for i := range batch {
					if !bytes.Equal(got[i], wantBatch[i]) {
						t.Fatalf("%v round %d: file %d (%d bytes) of %d: %x, want %x", alg, round, i, len(batch[i]), n, got[i], wantBatch[i])
					}
				}
			}
		}
	})
}

// TestDigestFilesKeepsInputs checks that hashing never writes into the
// caller's files (the tails are padded in scratch space) and that each
// digest is a slice of its own length, not of a shared buffer's.
func TestDigestFilesKeepsInputs(t *testing.T) {
	files := [][]byte{randomBytes(4097, 1), randomBytes(10, 2)[:3], randomBytes(8191, 3)}
	saved := make([][]byte, len(files))
	for i := range files {
		saved[i] = bytes.Clone(files[i][:cap(files[i])])
	}
	sums := DigestFiles(SHA512, files)
	for i := range files {
		if !bytes.Equal(files[i][:cap(files[i])], saved[i]) {
			t.Errorf("file %d changed", i)
		}
		if len(sums[i]) != 64 || cap(sums[i]) != 64 {
			t.Errorf("digest %d: len %d cap %d", i, len(sums[i]), cap(sums[i]))
		}
	}
}

// TestDigestFilesMatchesFsverityTool checks a batch of files against the
// reference tool.
func TestDigestFilesMatchesFsverityTool(t *testing.T) {
	tool := testfs.RequireTool(t, "fsverity")
	dir := t.TempDir()
	for _, alg := range []Algorithm{SHA256, SHA512} {
		sizes := batchSizes(alg)
		var files [][]byte
		for i, size := range sizes {
			files = append(files, randomBytes(size, uint64(500+i)))
		}
		sums := DigestFiles(alg, files)
		for i, data := range files {
			path := filepath.Join(dir, fmt.Sprintf("%v-%d", alg, i))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if want := toolDigest(t, tool, path, alg); !bytes.Equal(sums[i], want) {
				t.Errorf("%v, %d bytes: %x, fsverity digest says %x", alg, len(data), sums[i], want)
			}
		}
	}
}

// BenchmarkDigestFilesSmall and BenchmarkHasherSmall compare four small
// files (the shape most objects of an OS image have) hashed together and
// one after the other.
func BenchmarkDigestFilesSmall(b *testing.B) {
	files := [][]byte{randomBytes(3000, 1), randomBytes(9000, 2), randomBytes(5000, 3), randomBytes(14000, 4)}
	b.SetBytes(31000)
	for b.Loop() {
		DigestFiles(SHA512, files)
	}
}

func BenchmarkHasherSmall(b *testing.B) {
	files := [][]byte{randomBytes(3000, 1), randomBytes(9000, 2), randomBytes(5000, 3), randomBytes(14000, 4)}
	b.SetBytes(31000)
	var out [64]byte
	for b.Loop() {
		for _, f := range files {
			h := Get(SHA512)
			h.Write(f)
			h.Sum(out[:0])
			Put(h)
		}
	}
}

// FuzzDigestFiles cuts a buffer (the fuzz bytes, repeated) into files whose
// lengths the fuzzer picks, from empty to past BatchMax, and checks every
// digest DigestFiles gives against a Hasher of that file alone.
func FuzzDigestFiles(f *testing.F) {
	f.Add([]byte("x"), []byte{0, 1, 4, 255}, true)
	f.Add(randomBytes(5000, 2), []byte{3, 200, 254, 255, 7, 7, 7, 7, 7}, false)
	f.Fuzz(func(t *testing.T, unit, lengths []byte, useSHA512 bool) {
		alg := SHA256
		if useSHA512 {
			alg = SHA512
		}
		if len(unit) == 0 || len(lengths) == 0 || len(lengths) > 10 {
			return
		}
		// Length bytes up to 249 give files of up to 16 KiB (most files
		// of an image), 250 to 255 the sizes around BatchMax.
		var files [][]byte
		off := 0
		for i, l := range lengths {
			n := int(l) * 67
			if l >= 250 {
				n = BatchMax(alg) + int(l) - 254
			}
			if off+n > BatchMax(SHA256)+BatchMax(SHA512) {
				return // a run stays near a millisecond
			}
			file := make([]byte, n)
			for k := range file {
				file[k] = unit[(off+k)%len(unit)] ^ byte(i)
			}
			off += n
			files = append(files, file)
		}
		got := DigestFiles(alg, files)
		for i, file := range files {
			h := New(alg)
			h.Write(file)
			if want := h.Sum(nil); !bytes.Equal(got[i], want) {
				t.Fatalf("%v: file %d of %d (%d bytes): %x, alone %x", alg, i, len(files), len(file), got[i], want)
			}
		}
	})
}
