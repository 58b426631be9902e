package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
)

type runStats struct {
	wall   time.Duration
	cpu    float64 // user + system seconds
	maxRSS int64   // KiB
}

// timed runs a command under GNU time for its peak RSS: the rusage Go
// gets from wait4 would count this test process's memory too, since the
// child is vforked from it before exec.
func timed(b *testing.B, name string, args ...string) runStats {
	b.Helper()
	gnuTime := testfs.RequireTool(b, "time")
	rssFile := filepath.Join(b.TempDir(), "rss")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M %U %S", "-o", rssFile, name}, args...)...)
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

// BenchmarkPullLarge pulls the ~1 GiB, 30k-file benchmark image from the
// in-process registry with cfs-pull (fetch, decompress, split, fs-verity
// digest of every object, EROFS image) and with skopeo into an overlay
// containers-storage (fetch, decompress, extract: what podman pull does),
// on the same filesystem, and reports both side by side.
func BenchmarkPullLarge(b *testing.B) {
	skopeo := testfs.RequireTool(b, "skopeo")
	img, err := testimage.Large(1)
	if err != nil {
		b.Fatal(err)
	}
	reg := testregistry.New(b, testregistry.WithBlobsOnDisk())
	ref := reg.Push(b, "os", "large", img)
	var totalBlobs int64
	for _, l := range img.Layers {
		totalBlobs += l.DiffSize
	}
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		cfs := timed(b, binary, "--repo", filepath.Join(dir, "composefs"), "--tls-verify=false", "--insecure-policy", "--quiet", "--output", "none", ref)
		store := fmt.Sprintf("containers-storage:[overlay@%s+%s]localhost/bench:large", filepath.Join(dir, "graph"), filepath.Join(dir, "run"))
		peer := timed(b, skopeo, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", ref, store)
		// skopeo leaves the overlay graph mounted on itself.
		exec.Command("umount", filepath.Join(dir, "graph", "overlay")).Run()
		os.RemoveAll(filepath.Join(dir, "graph"))
		ratio := cfs.wall.Seconds() / peer.wall.Seconds()
		b.ReportMetric(cfs.wall.Seconds(), "s-cfs-pull")
		b.ReportMetric(peer.wall.Seconds(), "s-skopeo")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(float64(cfs.maxRSS)/1024, "MiB-rss-cfs-pull")
		b.Logf("pull of %.0f MiB (uncompressed), %d layers: cfs-pull %.1f s (peak RSS %d MiB), skopeo copy to containers-storage %.1f s (peak RSS %d MiB), ratio %.2f (target <= 1.25, RSS < 250 MiB)",
			float64(totalBlobs)/(1<<20), len(img.Layers), cfs.wall.Seconds(), cfs.maxRSS/1024, peer.wall.Seconds(), peer.maxRSS/1024, ratio)
	}
}
