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

type runStats struct {
	wall   time.Duration
	cpu    float64 // user + system seconds
	maxRSS int64   // KiB
}

// timed runs a command under GNU time for its peak RSS, with stdin.
func timed(b *testing.B, stdin []byte, name string, args ...string) runStats {
	b.Helper()
	gnuTime := testfs.RequireTool(b, "time")
	rssFile := filepath.Join(b.TempDir(), "rss")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M %U %S", "-o", rssFile, name}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, errb.Bytes())
	}
	r := runStats{wall: time.Since(start)}
	if text, err := os.ReadFile(rssFile); err == nil {
		var user, sys float64
		fmt.Sscan(string(text), &r.maxRSS, &user, &sys)
		r.cpu = user + sys
	}
	return r
}

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

// BenchmarkExportContainersStorageLarge writes the large benchmark image
// (testimage.Scale100k: ~100k files, ~3.7 GB, sized like a /usr) into a
// fresh containers-storage store from the composefs repository (cfs-clone
// --to containers-storage: clones, tar-split and the layer digest in one
// read) and, as the peer, from its OCI layout with skopeo (what podman
// does: decompress, write, tar-split), on one loop XFS, in
// CFS_BENCH_PAIRS interleaved pairs (default 3), caches dropped before
// each run, and reports the medians side by side with peak RSS and the
// disk the export took.
func BenchmarkExportContainersStorageLarge(b *testing.B) {
	testfs.RequirePrivileged(b)
	skopeo := testfs.RequireTool(b, "skopeo")
	img := testimage.Cached(b, testimage.Scale100k(1))
	size := img.Stats.Bytes
	fs := testfs.XFS(b, 20<<30)
	repo := fs.Path("composefs")
	tag := "localhost/bootc-" + img.Stats.ManifestDigest
	var errb bytes.Buffer
	pull := exec.Command(pullBinary, "--repo", repo, "--insecure-policy", "--quiet", "--output", "none", img.Ref)
	pull.Stderr = &errb
	if err := pull.Run(); err != nil {
		b.Fatalf("cfs-pull: %v\n%s", err, errb.Bytes())
	}
	list, err := exec.Command(pullBinary, "--repo", repo, "--quiet", "--from-repo", tag).Output()
	if err != nil {
		b.Fatalf("cfs-pull --from-repo: %v", err)
	}
	isize, err := diskacct.InodeSize(fs.Dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var walls, peerWalls, ratios, cpus, peerCPUs, rss, disk []float64
	for i := 0; i < benchpairs.Count(3); i++ {
		dir := fs.Path(fmt.Sprintf("run-%d", i))
		peerStore := "containers-storage:[overlay@" + filepath.Join(dir, "peer") + "+" + filepath.Join(dir, "peer-run") + ":overlay.skip_mount_home=true]localhost/bench:large"
		before := usedBytes(b, fs.Dir)
		dropCaches()
		cfs := timed(b, list, binary, "--to", "containers-storage", "--root", filepath.Join(dir, "cfs"), "--runroot", filepath.Join(dir, "cfs-run"), "--reflink", "always", "--quiet")
		extra := usedBytes(b, fs.Dir) - before
		b.Logf("pair %d: cfs-clone: %s", i+1, accountStore(b, filepath.Join(dir, "cfs"), filepath.Join(dir, "cfs-run"), extra, size, isize))
		peerBefore := usedBytes(b, fs.Dir)
		dropCaches()
		peer := timed(b, nil, skopeo, "--insecure-policy", "copy", "--quiet", img.Ref, peerStore)
		peerExtra := usedBytes(b, fs.Dir) - peerBefore
		b.Logf("pair %d: skopeo: %s", i+1, accountStore(b, filepath.Join(dir, "peer"), filepath.Join(dir, "peer-run"), peerExtra, size, isize))
		ratio := cfs.wall.Seconds() / peer.wall.Seconds()
		walls, peerWalls, ratios = append(walls, cfs.wall.Seconds()), append(peerWalls, peer.wall.Seconds()), append(ratios, ratio)
		cpus, peerCPUs = append(cpus, cfs.cpu), append(peerCPUs, peer.cpu)
		rss, disk = append(rss, float64(cfs.maxRSS)/1024), append(disk, 100*float64(extra)/float64(size))
		b.Logf("pair %d: export of %d entries, %.0f MiB into containers-storage: cfs-clone %.1f s (%.1f s CPU, peak RSS %d MiB, %.1f MiB of disk = %.2f%% of the image), skopeo copy oci: %.1f s (%.1f s CPU, peak RSS %d MiB); ratio %.2f wall, %.2f CPU",
			i+1, img.Stats.Entries, float64(size)/(1<<20), cfs.wall.Seconds(), cfs.cpu, cfs.maxRSS/1024, float64(extra)/(1<<20), 100*float64(extra)/float64(size),
			peer.wall.Seconds(), peer.cpu, peer.maxRSS/1024, ratio, cfs.cpu/peer.cpu)
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(benchpairs.Median(walls), "s-cfs-clone")
	b.ReportMetric(benchpairs.Median(peerWalls), "s-skopeo")
	b.ReportMetric(benchpairs.Median(ratios), "ratio")
	b.ReportMetric(benchpairs.Median(cpus), "cpu-s-cfs-clone")
	b.ReportMetric(benchpairs.Median(peerCPUs), "cpu-s-skopeo")
	b.ReportMetric(benchpairs.Median(rss), "MiB-rss")
	b.ReportMetric(benchpairs.Median(disk), "%disk")
	b.Logf("medians of %d interleaved pairs, caches dropped before each run: cfs-clone --to containers-storage %.1f s (%.1f s CPU, peak RSS %.0f MiB, extra disk %.2f%%), skopeo copy oci: %.1f s (%.1f s CPU); ratio %.2f (target <= 0.2, disk <= 2%%, RSS <= 150 MB)",
		len(ratios), benchpairs.Median(walls), benchpairs.Median(cpus), benchpairs.Median(rss), benchpairs.Median(disk), benchpairs.Median(peerWalls), benchpairs.Median(peerCPUs), benchpairs.Median(ratios))
}

// accountStore splits the disk an export into the store graph (with its
// run root) took by kind: the layers' files (overlay/<id>/diff) are the
// bodies, everything else (tar-split, layer and image records, the l/
// links) the store's metadata.
func accountStore(b *testing.B, graph, run string, extra, size, isize int64) string {
	b.Helper()
	var u diskacct.Usage
	for _, dir := range []string{graph, run} {
		v, err := diskacct.Walk(dir, func(rel string) bool {
			parts := strings.SplitN(rel, "/", 4)
			return len(parts) == 4 && parts[0] == "overlay" && parts[2] == "diff"
		})
		if err != nil {
			b.Fatal(err)
		}
		u = u.Add(v)
	}
	before := usedBytes(b, graph)
	if out, err := exec.Command("xfs_spaceman", "-c", "prealloc -s", graph).CombinedOutput(); err != nil {
		b.Fatalf("xfs_spaceman: %v\n%s", err, out)
	}
	return diskacct.Report(extra, size, isize, u) + fmt.Sprintf("; XFS preallocation released after it %.1f MiB", float64(before-usedBytes(b, graph))/(1<<20))
}

// dropCaches empties the page cache, so that each timed run reads from
// the disk as a first import or export on a host does.
func dropCaches() {
	unix.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}
