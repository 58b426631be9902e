package fsverity

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math/rand/v2"
	"strings"
	"testing"
)

// referenceDigest is a deliberately plain second implementation: whole file
// in memory, tree built level by level as the kernel documentation describes
// it. It shares no code with Hasher, so the two only agree if both are right.
func referenceDigest(data []byte, alg Algorithm) []byte {
	newHash := sha256.New
	if alg == SHA512 {
		newHash = sha512.New
	}
	hashOf := func(b []byte) []byte {
		h := newHash()
		h.Write(b)
		return h.Sum(nil)
	}
	// splitPadded cuts b into 4096-byte blocks, zero-padding the last.
	splitPadded := func(b []byte) [][]byte {
		var blocks [][]byte
		for len(b) > 0 {
			blk := make([]byte, 4096)
			n := copy(blk, b)
			b = b[n:]
			blocks = append(blocks, blk)
		}
		return blocks
	}

	root := make([]byte, 64)
	if len(data) > 0 {
		level := data
		for {
			var hashes []byte
			for _, blk := range splitPadded(level) {
				hashes = append(hashes, hashOf(blk)...)
			}
			if len(hashes) == alg.Size() {
				copy(root, hashes)
				break
			}
			level = hashes
		}
	}
	desc := make([]byte, 256)
	desc[0] = 1
	desc[1] = byte(alg)
	desc[2] = 12
	binary.LittleEndian.PutUint64(desc[8:], uint64(len(data)))
	copy(desc[16:80], root)
	return hashOf(desc)
}

// randomBytes returns reproducible noise, so that a failure can be rerun.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0xf5}).Read(b)
	return b
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishedVectors pins digests published by composefs (C and Rust test
// suites) and computed by their reference scripts (composefs.md §2.3).
func TestPublishedVectors(t *testing.T) {
	vectors := []struct {
		name           string
		data           []byte
		sha256, sha512 string
	}{
		{"empty", nil,
			"3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
			"ccf9e5aea1c2a64efa2f2354a6024b90dffde6bbc017825045dce374474e13d10adb9dadcc6ca8e17a3c075fbd31336e8f266ae6fa93a6c3bed66f9e784e5abf"},
		{"hello world", []byte("hello world"),
			"1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
			"18430270729d162d4e469daca123ae61893db4b0583d8f7081e3bf4f92b88ba514e7982f10733fb6aa895195c5ae8fd2eb2c47a8be05513ce5a0c51a6f570409"},
		{"hello world newline", []byte("hello world\n"),
			"37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92",
			"4098b052d2427dc9029c85062215dd6e6c41667bfae09f5ce90a49f7e01fca295c89b16a4d2703ac5b0593f476ca174675ee51829c2f1fd07c4133a87041c1d7"},
		{"foo bar baz", []byte("foo bar baz\n"),
			"91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b",
			"932b02ae1d26b7a97a917b8114964a7a950ccdff99bd196f2a6f337ec3282cda06d68ba53cabc3e23af532b629f6313340b26f690a0ad44470ccd846cef93b8c"},
		{"4096 zeros", make([]byte, 4096),
			"babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e",
			"928922686c4caf32175f5236a7f964e9925d10a74dc6d8344a8bd08b23c228ff5792573987d7895f628f39c4f4ebe39a7367d7aeb16aaa0cd324ac1d53664e61"},
		{"4097 zeros", make([]byte, 4097),
			"093756e4ea9683329106d4a16982682ed182c14bf076463a9e7f97305cbac743",
			"4339f5da3788e60fa6857bd7040fadccd6f125b2c2334777eb14ed55179ad887d9131e9ce78485afc23051392b71e015528abbb7be07ed7073c56480b15cedf1"},
		{"1 MiB zeros", make([]byte, 1<<20),
			"feb19a23e72cb1b8f935d668a09ecaad0bf7c5b9cdfa6dbba7c88a9998ed2b87",
			"b735a7f5b25dba3dafced82cfc87775a449b948c1fe323fa5500a6895d3118b99910d8dd2472ba3fcd676b77d6b555f124f6cbfc8615208b455ac056fd568494"},
	}
	for _, v := range vectors {
		for alg, want := range map[Algorithm]string{SHA256: v.sha256, SHA512: v.sha512} {
			t.Run(v.name+"/"+alg.String(), func(t *testing.T) {
				got, err := Digest(bytes.NewReader(v.data), alg)
				if err != nil {
					t.Fatal(err)
				}
				if hex.EncodeToString(got) != want {
					t.Errorf("Digest = %x, want %s", got, want)
				}
				if ref := referenceDigest(v.data, alg); hex.EncodeToString(ref) != want {
					t.Errorf("referenceDigest = %x, want %s (the oracle itself is wrong)", ref, want)
				}
			})
		}
	}
}

func TestAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		alg  Algorithm
		name string
		size int
	}{{SHA256, "sha256", 32}, {SHA512, "sha512", 64}} {
		if tc.alg.Size() != tc.size || tc.alg.String() != tc.name {
			t.Errorf("%d: Size %d String %q, want %d %q", tc.alg, tc.alg.Size(), tc.alg.String(), tc.size, tc.name)
		}
		for _, s := range []string{tc.name, strings.ToUpper(tc.name)} {
			if got, err := ParseAlgorithm(s); err != nil || got != tc.alg {
				t.Errorf("ParseAlgorithm(%q) = %v, %v", s, got, err)
			}
		}
	}
	for _, bad := range []string{"", "sha1", "sha384", "sha512:"} {
		if _, err := ParseAlgorithm(bad); err == nil {
			t.Errorf("ParseAlgorithm(%q) accepted", bad)
		}
	}
	if _, err := Digest(strings.NewReader("x"), Algorithm(3)); err == nil {
		t.Error("Digest accepted algorithm 3")
	}
	// The ioctl numbering is part of the contract.
	if SHA256 != 1 || SHA512 != 2 {
		t.Error("Algorithm values must equal FS_VERITY_HASH_ALG_*")
	}
}

// boundarySizes are the sizes where the tree changes shape: around one data
// block, and around a full first hash level for either algorithm (128
// SHA-256 or 64 SHA-512 hashes per block) and a full second SHA-512 level.
var boundarySizes = []int{
	0, 1, 4095, 4096, 4097,
	64 * 4096, 64*4096 + 1, 65 * 4096,
	128 * 4096, 128*4096 - 1, 129 * 4096,
	64 * 64 * 4096, 64*64*4096 + 100,
}

func TestMatchesReference(t *testing.T) {
	for i, size := range boundarySizes {
		data := randomBytes(size, uint64(i))
		for _, alg := range []Algorithm{SHA256, SHA512} {
			got, err := Digest(bytes.NewReader(data), alg)
			if err != nil {
				t.Fatal(err)
			}
			if want := referenceDigest(data, alg); !bytes.Equal(got, want) {
				t.Errorf("%v, %d bytes: got %x, want %x", alg, size, got, want)
			}
		}
	}
}

// writeChunked feeds data to a fresh Hasher in pieces whose sizes next picks.
func writeChunked(alg Algorithm, data []byte, next func() int) []byte {
	h := New(alg)
	for len(data) > 0 {
		n := min(max(next(), 1), len(data))
		if w, err := h.Write(data[:n]); w != n || err != nil {
			panic("Write must accept everything")
		}
		data = data[n:]
	}
	return h.Sum(nil)
}

func TestChunkedWritesMatchOneWrite(t *testing.T) {
	data := randomBytes(129*4096+123, 7)
	rng := rand.New(rand.NewPCG(1, 2))
	chunkers := map[string]func() int{
		"1":      func() int { return 1 },
		"4095":   func() int { return 4095 },
		"4096":   func() int { return 4096 },
		"4097":   func() int { return 4097 },
		"12289":  func() int { return 3*4096 + 1 },
		"random": func() int { return rng.IntN(3 * 4096) },
	}
	for _, alg := range []Algorithm{SHA256, SHA512} {
		whole := New(alg)
		whole.Write(data)
		want := whole.Sum(nil)
		for name, next := range chunkers {
			if got := writeChunked(alg, data, next); !bytes.Equal(got, want) {
				t.Errorf("%v, chunks of %s: %x, want %x", alg, name, got, want)
			}
		}
	}
}

// TestSumKeepsState checks the documented promise that Sum can be called
// in the middle of a stream, and that Reset gives a Hasher as good as new.
func TestSumKeepsState(t *testing.T) {
	data := randomBytes(130*4096+5, 9)
	for _, alg := range []Algorithm{SHA256, SHA512} {
		h := New(alg)
		for _, cut := range []int{0, 1, 4096, 4097, 128 * 4096, 129*4096 + 3} {
			h.Reset()
			h.Write(data[:cut])
			if mid := h.Sum(nil); !bytes.Equal(mid, referenceDigest(data[:cut], alg)) {
				t.Errorf("%v: Sum after %d bytes is wrong", alg, cut)
			}
			h.Write(data[cut:])
			if got, want := h.Sum(nil), referenceDigest(data, alg); !bytes.Equal(got, want) {
				t.Errorf("%v: Sum after a Sum at %d bytes = %x, want %x", alg, cut, got, want)
			}
		}
		prefix := []byte("prefix")
		if got := h.Sum(prefix); !bytes.Equal(got[:len(prefix)], prefix) || len(got) != len(prefix)+alg.Size() {
			t.Errorf("%v: Sum does not append to its argument", alg)
		}
	}
}

func TestHasherIsHashHash(t *testing.T) {
	var h hash.Hash = New(SHA512)
	if h.Size() != 64 || h.BlockSize() != 4096 {
		t.Errorf("Size %d BlockSize %d", h.Size(), h.BlockSize())
	}
}

// TestConstantMemory checks the tree keeps one block per level: a 64 MiB
// stream (16384 data blocks = 128 × 128) needs three SHA-256 level buffers,
// and nothing is allocated per block.
func TestConstantMemory(t *testing.T) {
	chunk := randomBytes(1<<20, 3)
	h := New(SHA256)
	h.Write(chunk) // let the first levels be allocated
	allocs := testing.AllocsPerRun(63, func() { h.Write(chunk) })
	if allocs != 0 {
		t.Errorf("Write allocates %.1f times per MiB", allocs)
	}
	if len(h.levels) > 3 {
		t.Errorf("%d tree levels held for 64 MiB", len(h.levels))
	}
	out := make([]byte, 0, 64)
	if allocs := testing.AllocsPerRun(10, func() { h.Sum(out[:0]) }); allocs != 0 {
		t.Errorf("Sum into a large enough slice allocates %.1f times", allocs)
	}
}

// FuzzDigest compares Hasher with referenceDigest on inputs built from the
// fuzz bytes repeated up to 256 times (so multi-level trees, past 128
// blocks, are reachable from small inputs) and written in chunks whose size
// the fuzzer also picks. Inputs stay under 160 blocks to keep a run near a
// millisecond. The fuzzer spends up to a minute minimising each new
// interesting input, which shows as 0 execs/sec; -fuzzminimizetime=100x
// keeps it fuzzing (about 3000 execs/sec on two cores here).
func FuzzDigest(f *testing.F) {
	f.Add([]byte(""), uint16(0), uint16(0), false)
	f.Add([]byte("hello world"), uint16(0), uint16(1), true)
	f.Add(bytes.Repeat([]byte{0xa5}, 4096), uint16(128), uint16(4095), false)
	f.Add(randomBytes(4000, 1), uint16(140), uint16(4097), true)
	f.Fuzz(func(t *testing.T, unit []byte, repeat, chunk uint16, useSHA512 bool) {
		const maxSize = 160 * 4096
		copies := int(repeat)%256 + 1
		if len(unit) > 0 {
			copies = min(copies, maxSize/len(unit))
		}
		data := make([]byte, 0, len(unit)*copies)
		for i := range copies {
			data = append(data, unit...)
			if len(unit) > 0 {
				// Make copies differ so that equal subtrees are not all
				// the tree contains.
				data[len(data)-len(unit)] ^= byte(i)
			}
		}
		alg := SHA256
		if useSHA512 {
			alg = SHA512
		}
		step := int(chunk)%(3*4096) + 1
		want := referenceDigest(data, alg)
		got := writeChunked(alg, data, func() int { return step })
		if !bytes.Equal(got, want) {
			t.Fatalf("%v of %d bytes in %d-byte writes: %x, want %x", alg, len(data), step, got, want)
		}
		// One Write hands whole runs of blocks over, which SHA-512 hashes
		// four at a time where the CPU allows (sha512x4_amd64.s).
		if got := writeChunked(alg, data, func() int { return len(data) }); !bytes.Equal(got, want) {
			t.Fatalf("%v of %d bytes in one write: %x, want %x", alg, len(data), got, want)
		}
	})
}

// TestGetPut checks that a Hasher given back with Put, whatever it was in
// the middle of, digests the next file as a new one does.
func TestGetPut(t *testing.T) {
	reused := 0
	for _, alg := range []Algorithm{SHA256, SHA512} {
		for i, size := range boundarySizes {
			h := Get(alg)
			// Leave it mid-stream: a partial block and, for the larger
			// sizes, tree levels holding hashes.
			h.Write(randomBytes(size+129*4096+7, uint64(i+100)))
			Put(h)
			data := randomBytes(size, uint64(i))
			g := Get(alg)
			if g == h {
				reused++
			}
			if g.Algorithm() != alg {
				t.Fatalf("Get(%v) gave a %v Hasher", alg, g.Algorithm())
			}
			g.Write(data)
			if got, want := g.Sum(nil), referenceDigest(data, alg); !bytes.Equal(got, want) {
				t.Errorf("%v, %d bytes after a Put: %x, want %x", alg, size, got, want)
			}
			Put(g)
		}
	}
	if reused == 0 {
		t.Error("Get never gave back a Hasher that Put kept")
	}
	defer func() {
		if recover() == nil {
			t.Error("Get of an invalid algorithm did not panic")
		}
	}()
	Get(Algorithm(3))
}
