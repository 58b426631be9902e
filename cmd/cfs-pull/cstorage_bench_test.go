package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/benchpairs"
	"github.com/cfs-project/cfs/internal/diskacct"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
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
