package reflink

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// writeRandom writes size pseudo-random bytes: random so that no filesystem
// can compress or deduplicate them into something that is not a plain copy.
func writeRandom(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)})
	if _, err := io.CopyN(f, r, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeSparse puts data at the given offsets, leaving holes between them, and
// sets the final size (a trailing hole if it is past the last data).
func writeSparse(t *testing.T, path string, size int64, data map[int64][]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func digest(t *testing.T, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

func requireSameContent(t *testing.T, dst, src string) {
	t.Helper()
	dstSum, dstSize := digest(t, dst)
	srcSum, srcSize := digest(t, src)
	if dstSize != srcSize || dstSum != srcSum {
		t.Fatalf("%s (%d bytes, sha256 %s) differs from %s (%d bytes, sha256 %s)", dst, dstSize, dstSum, src, srcSize, srcSum)
	}
}

// requireSameLargeContent compares chunk by chunk, for files too big to
// hash quickly.
func requireSameLargeContent(t *testing.T, dst, src string) {
	t.Helper()
	a, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bufA, bufB := make([]byte, 4<<20), make([]byte, 4<<20)
	for off := int64(0); ; {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			t.Fatalf("%s and %s differ in the 4 MiB at offset %d", dst, src, off)
		}
		if errA != nil || errB != nil {
			if errA != errB && !(isEOF(errA) && isEOF(errB)) {
				t.Fatalf("reading %s: %v; %s: %v", dst, errA, src, errB)
			}
			return
		}
		off += int64(na)
	}
}

func isEOF(err error) bool { return err == io.EOF || err == io.ErrUnexpectedEOF }

func open(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func requireAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s should not exist after a failed clone (lstat: %v)", path, err)
	}
}
