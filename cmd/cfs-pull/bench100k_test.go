package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/benchpairs"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
)

// freeBytes is the free space of the filesystem holding dir.
func freeBytes(b *testing.B, dir string) int64 {
	b.Helper()
	if err := exec.Command("sync", "-f", dir).Run(); err != nil {
		b.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Bfree) * st.Bsize
}

// allocated is the disk space the files under dir hold (st_blocks).
func allocated(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			n += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return n
}

// BenchmarkPull100k pulls the generated 100k-file, /usr-shaped image
// (testimage.Scale100k, cached as an OCI layout) with cfs-pull (decompress,
// split, fs-verity digest of every object, EROFS image) and with skopeo
// into an overlay containers-storage, interleaved, on one loop XFS. It
// prints both side by side with their ratio, the peak RSS of each and
// entries per MiB of cfs-pull's, and the disk cfs-pull's repository
// holds beyond its files' own blocks (XFS preallocation left behind).
// Targets: ratio <= 0.4, RSS <= 150 MiB, extra disk <= 2%.
//
// Both sides start each timed run from the same state: everything
// written before synced and the caches dropped, so neither pays for the
// other's writeback nor reads the blobs from a warm cache. The loop device
// writes its image with direct I/O where the host allows it
// (testfs.XFSDirectIO), as a disk would, rather than copying every block
// into the image file's page cache. cfs-pull's time includes making its
// objects durable (syncfs); skopeo's does not, as skopeo does not sync:
// the sync after it is timed and printed beside, not counted.
func BenchmarkPull100k(b *testing.B) {
	testfs.RequirePrivileged(b)
	skopeo := testfs.RequireTool(b, "skopeo")
	spaceman := testfs.RequireTool(b, "xfs_spaceman")
	img := testimage.Cached(b, testimage.Scale100k(1))
	xfs := testfs.XFSDirectIO(b, 16<<30)
	b.Logf("loop device with direct I/O: %v", xfs.DirectIO)
	var cfsWall, peerWall, ratios, cfsCPU, rss, extra, prealloc []float64
	var peerRSS int64
	for i := 0; i < benchpairs.Count(3); i++ {
		repo := xfs.Path(fmt.Sprintf("composefs-%d", i))
		before := freeBytes(b, xfs.Path())
		dropCaches()
		cfs := timed(b, binary, "--repo", repo, "--insecure-policy", "--quiet", "--output", "none", img.Ref)
		after := freeBytes(b, xfs.Path())
		used, files := before-after, allocated(repo)
		extra = append(extra, float64(used-files)/float64(files))
		// What XFS still holds past the files' ends: the scan that frees
		// it now would otherwise run minutes later.
		if out, err := exec.Command(spaceman, "-c", "prealloc -s", xfs.Path()).CombinedOutput(); err != nil {
			b.Fatalf("xfs_spaceman: %v\n%s", err, out)
		}
		prealloc = append(prealloc, float64(freeBytes(b, xfs.Path())-after)/(1<<20))
		os.RemoveAll(repo)

		graph, run := xfs.Path("graph"), xfs.Path("run")
		store := fmt.Sprintf("containers-storage:[overlay@%s+%s]localhost/bench:100k", graph, run)
		dropCaches()
		peer := timed(b, skopeo, "--insecure-policy", "copy", "--quiet", img.Ref, store)
		syncStart := time.Now()
		unix.Sync()
		peerSync := time.Since(syncStart)
		// skopeo leaves the overlay graph mounted on itself.
		exec.Command("umount", filepath.Join(graph, "overlay")).Run()
		os.RemoveAll(graph)
		os.RemoveAll(run)

		cfsWall = append(cfsWall, cfs.wall.Seconds())
		peerWall = append(peerWall, peer.wall.Seconds())
		ratios = append(ratios, cfs.wall.Seconds()/peer.wall.Seconds())
		cfsCPU = append(cfsCPU, cfs.cpu)
		rss = append(rss, float64(cfs.maxRSS)/1024)
		peerRSS = max(peerRSS, peer.maxRSS)
		b.Logf("pair %d: cfs-pull %.1f s (cpu %.1f s, RSS %d MiB, extra disk %.2f%%, %.1f MiB preallocated), skopeo %.1f s (cpu %.1f s, RSS %d MiB; a sync after it %.1f s, not counted), ratio %.2f",
			i+1, cfs.wall.Seconds(), cfs.cpu, cfs.maxRSS/1024, 100*extra[i], prealloc[i], peer.wall.Seconds(), peer.cpu, peer.maxRSS/1024, peerSync.Seconds(), ratios[i])
	}
	st := img.Stats
	b.ReportMetric(benchpairs.Median(cfsWall), "s-cfs-pull")
	b.ReportMetric(benchpairs.Median(peerWall), "s-skopeo")
	b.ReportMetric(benchpairs.Median(ratios), "ratio")
	b.ReportMetric(benchpairs.Median(rss), "MiB-rss-cfs-pull")
	b.ReportMetric(float64(st.Entries)/benchpairs.Median(rss), "entries/MiB")
	b.ReportMetric(100*benchpairs.Median(extra), "%extra-disk")
	b.ReportMetric(benchpairs.Median(prealloc), "MiB-prealloc")
	b.Logf("%d entries, %.0f MiB in files, %.0f MiB of blobs; medians of %d interleaved pairs: cfs-pull %.1f s (cpu %.1f s), skopeo copy to containers-storage %.1f s, ratio %.2f (target <= 0.4); peak RSS cfs-pull %.0f MiB = %.0f entries/MiB (target <= 150 MiB), skopeo %d MiB; disk beyond the repository's blocks %.2f%% (target <= 2%%; inodes and logs included), of it XFS preallocation %.1f MiB",
		st.Entries, float64(st.Bytes)/(1<<20), float64(st.BlobBytes)/(1<<20), len(ratios), benchpairs.Median(cfsWall), benchpairs.Median(cfsCPU), benchpairs.Median(peerWall), benchpairs.Median(ratios),
		benchpairs.Median(rss), float64(st.Entries)/benchpairs.Median(rss), peerRSS/1024, 100*benchpairs.Median(extra), benchpairs.Median(prealloc))
}
