package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/benchpairs"
	"github.com/cfs-project/cfs/internal/diskacct"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// usedBytes is how much of the filesystem holding dir is in use, once
// everything written is allocated and everything deleted freed.
func usedBytes(b *testing.B, dir string) int64 {
	b.Helper()
	unix.Sync()
	time.Sleep(2 * time.Second) // XFS frees the blocks of unlinked files in the background
	unix.Sync()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

type cpuStats struct {
	wall   time.Duration
	cpu    float64 // user + system seconds
	maxRSS int64   // KiB
}

// timedCPU is timed with the command's CPU time too: on a busy machine
// wall times say as much about the neighbours as about the command.
func timedCPU(b *testing.B, name string, args ...string) cpuStats {
	b.Helper()
	gnuTime := testfs.RequireTool(b, "time")
	out := filepath.Join(b.TempDir(), "time")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M %U %S", "-o", out, name}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, errb.Bytes())
	}
	r := cpuStats{wall: time.Since(start)}
	if text, err := os.ReadFile(out); err == nil {
		var user, sys float64
		fmt.Sscan(string(text), &r.maxRSS, &user, &sys)
		r.cpu = user + sys
	}
	return r
}

// BenchmarkImportContainersStorageLarge imports the large benchmark image
// (testimage.Scale100k: ~100k files, ~3.7 GB, sized like a /usr) into a
// composefs repository from containers-storage (cfs-pull
// containers-storage:, cloning the layers' files, reading each clone once
// for its fs-verity digest, CRC64 and the layer digest) and, as the peer,
// from its OCI layout (cfs-pull oci:, decompressing and writing), on one
// loop XFS, in CFS_BENCH_PAIRS interleaved pairs (default 3), caches
// dropped before each run, and reports the medians side by side with peak
// RSS and the disk the import took beyond what it shares with the store.
// Then it measures the floor of any such import on the same filesystem
// (importFloor): the per-file calls and one cold read of every byte,
// without and with the digests, so that the ratio can be read against
// what is possible at all.
func BenchmarkImportContainersStorageLarge(b *testing.B) {
	testfs.RequirePrivileged(b)
	skopeo := testfs.RequireTool(b, "skopeo")
	img := testimage.Cached(b, testimage.Scale100k(1))
	size := img.Stats.Bytes
	fs := testfs.XFS(b, 20<<30)
	s := cstore{graph: fs.Path("storage"), run: fs.Path("run")}
	const name = "localhost/cfs-bench:large"
	timedCPU(b, skopeo, "--insecure-policy", "copy", "--quiet", img.Ref, s.skopeoRef(name))
	isize, err := diskacct.InodeSize(fs.Dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var walls, peerWalls, ratios, cpus, peerCPUs, rss, disk []float64
	for i := 0; i < benchpairs.Count(3); i++ {
		dir := fs.Path(fmt.Sprintf("run-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		before := usedBytes(b, fs.Dir)
		dropCaches()
		cfs := timedCPU(b, binary, "--repo", filepath.Join(dir, "composefs"), "--quiet", "--output", "none", "--reflink", "always", s.ref(name))
		extra := usedBytes(b, fs.Dir) - before
		b.Logf("pair %d: cfs-pull containers-storage: %s", i+1, accountRepo(b, filepath.Join(dir, "composefs"), extra, size, isize))
		peerBefore := usedBytes(b, fs.Dir)
		dropCaches()
		peer := timedCPU(b, binary, "--repo", filepath.Join(dir, "oci-composefs"), "--insecure-policy", "--quiet", "--output", "none", img.Ref)
		peerExtra := usedBytes(b, fs.Dir) - peerBefore
		b.Logf("pair %d: cfs-pull oci: %s", i+1, accountRepo(b, filepath.Join(dir, "oci-composefs"), peerExtra, size, isize))
		ratio := cfs.wall.Seconds() / peer.wall.Seconds()
		walls, peerWalls, ratios = append(walls, cfs.wall.Seconds()), append(peerWalls, peer.wall.Seconds()), append(ratios, ratio)
		cpus, peerCPUs = append(cpus, cfs.cpu), append(peerCPUs, peer.cpu)
		rss, disk = append(rss, float64(cfs.maxRSS)/1024), append(disk, 100*float64(extra)/float64(size))
		b.Logf("pair %d: import of %d entries, %.0f MiB: cfs-pull containers-storage: %.1f s (%.1f s CPU, peak RSS %d MiB, %.1f MiB of disk = %.2f%% of the image), cfs-pull oci: %.1f s (%.1f s CPU, peak RSS %d MiB); ratio %.2f wall, %.2f CPU",
			i+1, img.Stats.Entries, float64(size)/(1<<20), cfs.wall.Seconds(), cfs.cpu, cfs.maxRSS/1024, float64(extra)/(1<<20), 100*float64(extra)/float64(size),
			peer.wall.Seconds(), peer.cpu, peer.maxRSS/1024, ratio, cfs.cpu/peer.cpu)
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	}
	// The floor of any zero-copy import on this machine, measured the same
	// way: what it cannot avoid, without the tar, the streams or the image.
	bare := importFloor(b, s.graph, fs.Path("floor"), false)
	hashed := importFloor(b, s.graph, fs.Path("floor"), true)
	b.Logf("floor: every diff file over 64 bytes opened, cloned into an unnamed file, read cold and linked (%d objects, %.0f MiB, syncfs per 1,024, %d workers): %s; with its fs-verity SHA-512 and the sha256 of every byte: %s; ratio of the latter to cfs-pull oci: %.2f",
		bare.objects, float64(bare.bytes)/(1<<20), floorWorkers(), bare, hashed, hashed.wall.Seconds()/benchpairs.Median(peerWalls))
	b.ReportMetric(bare.wall.Seconds(), "s-floor")
	b.ReportMetric(hashed.wall.Seconds(), "s-floor-hashed")
	b.ReportMetric(benchpairs.Median(walls), "s-cstorage")
	b.ReportMetric(benchpairs.Median(peerWalls), "s-oci")
	b.ReportMetric(benchpairs.Median(ratios), "ratio")
	b.ReportMetric(benchpairs.Median(cpus), "cpu-s-cstorage")
	b.ReportMetric(benchpairs.Median(peerCPUs), "cpu-s-oci")
	b.ReportMetric(benchpairs.Median(rss), "MiB-rss")
	b.ReportMetric(benchpairs.Median(disk), "%disk")
	b.Logf("medians of %d interleaved pairs, caches dropped before each run: cfs-pull containers-storage: %.1f s (%.1f s CPU, peak RSS %.0f MiB, extra disk %.2f%%), cfs-pull oci: %.1f s (%.1f s CPU); ratio %.2f (target <= 0.3, disk <= 2%%, RSS <= 150 MB)",
		len(ratios), benchpairs.Median(walls), benchpairs.Median(cpus), benchpairs.Median(rss), benchpairs.Median(disk), benchpairs.Median(peerWalls), benchpairs.Median(peerCPUs), benchpairs.Median(ratios))
}

// accountRepo splits the disk a pull into repo took (extra) by kind, the
// EROFS image and the streams apart from the bodies (every other object),
// and says how much of it was XFS preallocation still held.
func accountRepo(b *testing.B, repo string, extra, size, isize int64) string {
	b.Helper()
	meta := map[string]bool{}
	for _, sub := range []string{"images", "streams"} {
		entries, err := os.ReadDir(filepath.Join(repo, sub))
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(repo, sub, e.Name())); err == nil {
				meta[filepath.Clean(filepath.Join(sub, target))] = true
			}
		}
	}
	u, err := diskacct.Walk(repo, func(rel string) bool { return strings.HasPrefix(rel, "objects/") && !meta[rel] })
	if err != nil {
		b.Fatal(err)
	}
	return diskacct.Report(extra, size, isize, u) + preallocated(b, repo)
}

// preallocated releases what XFS still holds past the files' ends (its
// background scan would, minutes later) and says how much that was.
func preallocated(b *testing.B, dir string) string {
	b.Helper()
	before := usedBytes(b, dir)
	if out, err := exec.Command("xfs_spaceman", "-c", "prealloc -s", dir).CombinedOutput(); err != nil {
		b.Fatalf("xfs_spaceman: %v\n%s", err, out)
	}
	return fmt.Sprintf("; XFS preallocation released after it %.1f MiB", float64(before-usedBytes(b, dir))/(1<<20))
}

// dropCaches empties the page cache, so that each timed run reads from
// the disk as a first import or export on a host does.
func dropCaches() {
	unix.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

type floorRun struct {
	wall           time.Duration
	user, sys      float64
	objects, bytes int64
}

func (f floorRun) String() string {
	return fmt.Sprintf("%.1f s (%.1f s CPU: %.1f user, %.1f system)", f.wall.Seconds(), f.user+f.sys, f.user, f.sys)
}

func floorWorkers() int { return 4 * runtime.GOMAXPROCS(0) }

// importFloor does, for every regular file of more than 64 bytes in the
// store's diff directories, the least a zero-copy import must: open it,
// clone it into an unnamed file of dir (O_TMPFILE, FICLONE), read the
// clone once, cold, and link it under a name, with a syncfs per 1,024
// objects (no name before its bytes are durable), on floorWorkers
// goroutines; with hash, it also computes the fs-verity SHA-512 and a
// sha256 of every byte, the digests the import cannot skip. Caches are
// dropped after the directory walk. It leaves nothing in dir.
func importFloor(b *testing.B, graph, dir string, hash bool) floorRun {
	b.Helper()
	var files []string
	diffs, err := filepath.Glob(filepath.Join(graph, "overlay", "*", "diff"))
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range diffs {
		err := filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err == nil && de.Type().IsRegular() {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for i := range 256 {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	defer os.RemoveAll(dir)
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(dirfd)
	dropCaches()
	var r floorRun
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	jobs := make(chan int, 1024)
	var objects, bytes atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range floorWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for i := range jobs {
				if err := floorObject(files[i], dir, dirfd, i, buf, hash, &objects, &bytes); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range files {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := unix.Syncfs(dirfd); err != nil {
		b.Fatal(err)
	}
	r.wall = time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	r.user, r.sys = tv(ru1.Utime)-tv(ru0.Utime), tv(ru1.Stime)-tv(ru0.Stime)
	r.objects, r.bytes = objects.Load(), bytes.Load()
	return r
}

func floorObject(path, dir string, dirfd, i int, buf []byte, hash bool, objects, bytes *atomic.Int64) error {
	src, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	if st.Size <= 64 {
		return nil
	}
	sub := fmt.Sprintf("%02x", i%256)
	dst, err := unix.Open(filepath.Join(dir, sub), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	if err := unix.IoctlFileClone(dst, src); err != nil {
		return fmt.Errorf("FICLONE %s: %w", path, err)
	}
	verity, whole := fsverity.New(fsverity.SHA512), sha256.New()
	for off := int64(0); off < st.Size; {
		n, err := unix.Pread(dst, buf, off)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s: short clone", path)
		}
		if hash {
			verity.Write(buf[:n])
			whole.Write(buf[:n])
		}
		off += int64(n)
	}
	if err := unix.Linkat(dst, "", dirfd, fmt.Sprintf("%s/%d", sub, i), unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	bytes.Add(st.Size)
	if objects.Add(1)%1024 == 0 {
		return unix.Syncfs(dirfd)
	}
	return nil
}
