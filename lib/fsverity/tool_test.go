package fsverity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
)

// toolDigest runs `fsverity digest`, the reference implementation the
// design requires us to equal, and parses its "<alg>:<hex> <path>" line.
func toolDigest(t testing.TB, tool, path string, alg Algorithm) []byte {
	t.Helper()
	digest, _ := toolDigestCPU(t, tool, path, alg)
	return digest
}

// toolDigestCPU is toolDigest that also returns the CPU time (user + system)
// the tool used, for benchmarks on machines too busy for wall-clock times.
func toolDigestCPU(t testing.TB, tool, path string, alg Algorithm) ([]byte, time.Duration) {
	t.Helper()
	cmd := exec.Command(tool, "digest", "--hash-alg="+alg.String(), path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s digest %s: %v", tool, path, err)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	line := strings.TrimSpace(string(out))
	algHex, file, ok := strings.Cut(line, " ")
	gotAlg, hexDigest, ok2 := strings.Cut(algHex, ":")
	if !ok || !ok2 || file != path || gotAlg != alg.String() {
		t.Fatalf("unexpected fsverity output %q", line)
	}
	return mustHex(t, hexDigest), cpu
}

// writePatternFile makes a size-byte file quickly: a 1 MiB random pattern
// repeated, each copy stamped with its index so blocks and subtrees differ.
// holeAt/holeLen leave a sparse hole (read back as zeros) when holeLen > 0.
func writePatternFile(t testing.TB, path string, size, holeAt, holeLen int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pattern := randomBytes(1<<20, 42)
	for off := int64(0); off < size; {
		if holeLen > 0 && off == holeAt {
			off += holeLen
			continue
		}
		n := min(int64(len(pattern)), size-off)
		if holeLen > 0 && off < holeAt {
			n = min(n, holeAt-off)
		}
		copy(pattern, fmt.Sprintf("%016x", off))
		if _, err := f.WriteAt(pattern[:n], off); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if err := f.Truncate(size); err != nil { // a trailing hole needs the size set
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkAgainstTool(t *testing.T, tool, path string) {
	t.Helper()
	for _, alg := range []Algorithm{SHA256, SHA512} {
		want := toolDigest(t, tool, path, alg)
		got, err := DigestFile(path, alg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s %v: DigestFile %x, fsverity digest %x", filepath.Base(path), alg, got, want)
		}
	}
}

func TestMatchesFsverityTool(t *testing.T) {
	tool := testfs.RequireTool(t, "fsverity")
	dir := t.TempDir()
	const block = 4096
	sizes := append(boundarySizes,
		// Three levels for both algorithms (more than 128×128 blocks), with
		// a partial last block.
		(128*128+1)*block+77,
	)
	for i, size := range sizes {
		path := filepath.Join(dir, fmt.Sprintf("f%d-%d", i, size))
		if err := os.WriteFile(path, randomBytes(size, uint64(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		checkAgainstTool(t, tool, path)
	}
}

// TestMatchesFsverityToolLarge covers a 600 MiB file: three hash levels for
// either algorithm, hundreds of full read buffers, and a sparse hole that
// reads back as zeros.
func TestMatchesFsverityToolLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("600 MiB file; skipped with -short")
	}
	tool := testfs.RequireTool(t, "fsverity")
	path := filepath.Join(t.TempDir(), "large")
	const MiB = 1 << 20
	writePatternFile(t, path, 600*MiB+123, 300*MiB, 200*MiB)
	checkAgainstTool(t, tool, path)
}

// TestDigestReaderShapes checks that Digest does not depend on how a reader
// splits its data: one-byte reads and a reader that is not an *os.File.
func TestDigestReaderShapes(t *testing.T) {
	data := randomBytes(70*4096+9, 11)
	want := referenceDigest(data, SHA512)
	for name, r := range map[string]io.Reader{
		"onebyte": &oneByteReader{data: data},
		"multi":   io.MultiReader(bytes.NewReader(data[:5]), bytes.NewReader(data[5:])),
	} {
		got, err := Digest(r, SHA512)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %x, %v; want %x", name, got, err, want)
		}
	}
	boom := fmt.Errorf("boom")
	if _, err := Digest(io.MultiReader(bytes.NewReader(data), &errReader{boom}), SHA256); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("read error lost: %v", err)
	}
}

func TestDigestFileErrorNamesFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := DigestFile(missing, SHA512)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("digest of a missing file: %v", err)
	}
	dir := t.TempDir()
	if _, err := DigestFile(dir, SHA512); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("digest of a directory: %v", err)
	}
}

type oneByteReader struct{ data []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
