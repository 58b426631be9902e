package fsverity

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
)

const benchFileSize = 1 << 30

// benchFile is the 1 GiB input shared by the digest benchmarks: writing it
// takes longer than hashing it, so it is made once per test binary run and
// removed by TestMain.
var benchFile struct {
	once sync.Once
	dir  string
	path string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchFile.dir != "" {
		os.RemoveAll(benchFile.dir)
	}
	os.Exit(code)
}

func gibFile(b *testing.B) string {
	benchFile.once.Do(func() {
		dir, err := os.MkdirTemp("", "fsverity-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchFile.dir = dir
		path := filepath.Join(dir, "1GiB")
		writePatternFile(b, path, benchFileSize, 0, 0)
		benchFile.path = path
	})
	if benchFile.path == "" {
		b.Fatal("benchmark input could not be created")
	}
	return benchFile.path
}

func BenchmarkDigestSHA256(b *testing.B) { benchmarkAgainstTool(b, SHA256) }
func BenchmarkDigestSHA512(b *testing.B) { benchmarkAgainstTool(b, SHA512) }

// benchmarkAgainstTool times DigestFile and `fsverity digest` on the same
// warm 1 GiB file, alternating them so that a noisy neighbour on a shared
// machine slows both alike, and reports both throughputs and their ratio.
// GOMAXPROCS is 1 while it runs: both implementations hash on one core, and
// the comparison should not credit us with a garbage collector on another.
func benchmarkAgainstTool(b *testing.B, alg Algorithm) {
	tool := testfs.RequireTool(b, "fsverity")
	path := gibFile(b)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))

	want := toolDigest(b, tool, path, alg) // also warms the page cache
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	var ours, peer time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		got, err := DigestFile(path, alg)
		ours += time.Since(start)

		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			b.Fatalf("DigestFile %x, fsverity digest %x", got, want)
		}
		start = time.Now()
		toolDigest(b, tool, path, alg)
		peer += time.Since(start)
		b.StartTimer()
	}

	mbps := func(d time.Duration) float64 { return float64(benchFileSize) * float64(b.N) / d.Seconds() / 1e6 }
	oursMBps, peerMBps := mbps(ours), mbps(peer)
	b.ReportMetric(oursMBps, "MB/s-ours")
	b.ReportMetric(peerMBps, "MB/s-fsverity")
	b.ReportMetric(oursMBps/peerMBps, "ratio")
	b.Logf("fsverity digest %v 1 GiB (%d runs each): cfs %.0f MB/s, fsverity(1) %.0f MB/s, ratio %.2f",
		alg, b.N, oursMBps, peerMBps, oursMBps/peerMBps)
}
