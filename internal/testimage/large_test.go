package testimage

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// largeEnv opts in to the ~1 GiB image: generating and writing it takes
// about a minute on two cores, too long for every `go test`.
const largeEnv = "CFS_TEST_LARGE"

func TestLargeImage(t *testing.T) {
	if os.Getenv(largeEnv) == "" || testing.Short() {
		t.Skipf("set %s=1 to generate the benchmark image", largeEnv)
	}
	start := time.Now()
	img, err := Large(1)
	if err != nil {
		t.Fatal(err)
	}
	generated := time.Since(start)

	var files, bytes int64
	for _, e := range img.tree {
		if e.Type == TypeRegular {
			files++
			bytes += e.Size
		}
	}
	var compressed int64
	for _, l := range img.Layers {
		compressed += l.Size
		if l.blob != nil {
			t.Errorf("layer %s (%d bytes) is cached in memory", l.Digest, l.Size)
		}
	}
	t.Logf("Large: %d paths, %d files, %d MiB of content, %d MiB of blobs, generated in %v", len(img.tree), files, bytes/MiB, compressed/MiB, generated)
	if files < 25_000 || files > 35_000 || bytes < 800*MiB || bytes > 1400*MiB {
		t.Errorf("Large should be about 30k files and 1 GiB")
	}
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	if mem.HeapAlloc > 256*MiB {
		t.Errorf("%d MiB live heap after generating; blobs must stream, not stay in memory", mem.HeapAlloc/MiB)
	}

	start = time.Now()
	if err := img.WriteOCILayout(t.TempDir(), "large"); err != nil {
		t.Fatal(err)
	}
	t.Logf("WriteOCILayout took %v", time.Since(start))
}

// BenchmarkGenerateSmall tracks the cost every unit test pays.
func BenchmarkGenerateSmall(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(Options{Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteLargeOCILayout measures writing the benchmark image, which
// regenerates and compresses every layer.
func BenchmarkWriteLargeOCILayout(b *testing.B) {
	if os.Getenv(largeEnv) == "" {
		b.Skipf("set %s=1 to generate the benchmark image", largeEnv)
	}
	img, err := Large(1)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, l := range img.Layers {
		size += l.Size
	}
	b.SetBytes(size)
	for b.Loop() {
		if err := img.WriteOCILayout(b.TempDir(), "large"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestScale100kCached generates the large benchmark image into the cache
// (or finds it there) and reports its figures.
func TestScale100kCached(t *testing.T) {
	if os.Getenv(largeEnv) == "" || testing.Short() {
		t.Skipf("set %s=1 to generate the benchmark image", largeEnv)
	}
	start := time.Now()
	c := Cached(t, Scale100k(1))
	t.Logf("%s: %+v (%v)", c.Ref, c.Stats, time.Since(start))
	if c.Stats.Entries < 100_000 || c.Stats.Bytes < 3e9 {
		t.Errorf("want at least 100k entries and 3 GB")
	}
}
