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
	"golang.org/x/sys/unix"
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
// warm 1 GiB file, alternating them so that a noisy neighbour slows both
// alike. Both hash on one core, so GOMAXPROCS is 1 and the comparison does
// not credit us with a garbage collector on another core.
//
// The headline metrics (MB/s-ours, MB/s-fsverity, ratio) divide by CPU time
// (user + system; ours from this thread's rusage, the tool's from its
// process): on a shared machine wall-clock time mostly measures the
// neighbours. The wall-clock ratio is reported as ratio-wall.
func benchmarkAgainstTool(b *testing.B, alg Algorithm) {
	tool := testfs.RequireTool(b, "fsverity")
	path := gibFile(b)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	runtime.LockOSThread() // RUSAGE_THREAD must keep measuring the thread that hashes
	defer runtime.UnlockOSThread()

	want := toolDigest(b, tool, path, alg) // also warms the page cache
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	var oursWall, oursCPU, peerWall, peerCPU time.Duration
	b.ResetTimer()
	for range b.N {
		cpu0 := threadCPU(b)
		start := time.Now()
		got, err := DigestFile(path, alg)
		oursWall += time.Since(start)
		oursCPU += threadCPU(b) - cpu0

		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			b.Fatalf("DigestFile %x, fsverity digest %x", got, want)
		}
		start = time.Now()
		_, cpu := toolDigestCPU(b, tool, path, alg)
		peerWall += time.Since(start)
		peerCPU += cpu
		b.StartTimer()
	}

	mbps := func(d time.Duration) float64 { return float64(benchFileSize) * float64(b.N) / d.Seconds() / 1e6 }
	ours, peer := mbps(oursCPU), mbps(peerCPU)
	b.ReportMetric(ours, "MB/s-ours")
	b.ReportMetric(peer, "MB/s-fsverity")
	b.ReportMetric(ours/peer, "ratio")
	b.ReportMetric(mbps(oursWall)/mbps(peerWall), "ratio-wall")
	b.Logf("fsverity digest %v 1 GiB (%d runs each, per CPU second): cfs %.0f MB/s, fsverity(1) %.0f MB/s, ratio %.2f; wall clock: cfs %.0f MB/s, fsverity(1) %.0f MB/s, ratio %.2f",
		alg, b.N, ours, peer, ours/peer, mbps(oursWall), mbps(peerWall), mbps(oursWall)/mbps(peerWall))
}

// threadCPU is the user + system time of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
