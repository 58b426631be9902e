package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/benchpairs"
	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
)

type benchRun struct {
	wall   float64 // seconds
	cpu    float64 // user + system seconds
	maxRSS float64 // MiB
}

// timed runs a command under GNU time: the rusage of a child vforked from
// this process would count this process's memory too.
func timed(b *testing.B, name string, args ...string) benchRun {
	b.Helper()
	gnuTime := testfs.RequireTool(b, "time")
	out := filepath.Join(b.TempDir(), "time")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M %U %S", "-o", out, name}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, stderr.Bytes())
	}
	r := benchRun{wall: time.Since(start).Seconds()}
	text, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var kib, user, sys float64
	fmt.Sscan(string(text), &kib, &user, &sys)
	r.maxRSS, r.cpu = kib/1024, user+sys
	return r
}

// mkcomposefsPath is the C mkcomposefs to compare with: $MKCOMPOSEFS, or
// mkcomposefs on PATH, or "" (Debian does not package it).
func mkcomposefsPath() string {
	if p := os.Getenv("MKCOMPOSEFS"); p != "" {
		return p
	}
	p, _ := exec.LookPath("mkcomposefs")
	return p
}

// BenchmarkMkfs100k builds the image of the generated 100k-file,
// /usr-shaped tree (testimage.Scale100k, extracted once into the cache)
// with cfs-image mkfs and, interleaved, with the C mkcomposefs when it is
// found ($MKCOMPOSEFS or PATH), both writing format 1 with SHA-256
// digests, and checks that the two images are the same bytes. It prints
// wall and CPU time, peak RSS, entries per MiB and the ratio (target <=
// 0.7, RSS <= mkcomposefs's). Pairs: CFS_BENCH_PAIRS, default 3, after
// one untimed run that brings the tree into the page cache.
func BenchmarkMkfs100k(b *testing.B) {
	testfs.RequirePrivileged(b)
	img := testimage.Cached(b, testimage.Scale100k(1))
	tree := img.Tree(b)
	bins, err := testbin.Build(b.TempDir(), "github.com/cfs-project/cfs/cmd/cfs-image")
	if err != nil {
		b.Fatal(err)
	}
	cfsImage := bins["cfs-image"]
	peer := mkcomposefsPath()
	if peer == "" {
		b.Logf("mkcomposefs not found (set MKCOMPOSEFS or put it on PATH): cfs-image mkfs figures only, no comparison")
	}
	pairs := benchpairs.Count(3)
	out := b.TempDir()
	ours, theirs := filepath.Join(out, "cfs.img"), filepath.Join(out, "mkcomposefs.img")
	// Both tools are timed on a tree in the page cache: an untimed run
	// reads it in first, or the first run (ours) would time the disk
	// after another benchmark dropped the caches.
	timed(b, cfsImage, "mkfs", "--digest-algo", "sha256", "--version", "1", tree, ours)
	var cfsWall, cfsCPU, cfsRSS, peerWall, peerCPU, peerRSS, ratios []float64
	for i := 0; i < pairs; i++ {
		c := timed(b, cfsImage, "mkfs", "--digest-algo", "sha256", "--version", "1", tree, ours)
		cfsWall, cfsCPU, cfsRSS = append(cfsWall, c.wall), append(cfsCPU, c.cpu), append(cfsRSS, c.maxRSS)
		if peer == "" {
			b.Logf("run %d: cfs-image mkfs %.1f s (cpu %.1f s, RSS %.0f MiB)", i+1, c.wall, c.cpu, c.maxRSS)
			continue
		}
		p := timed(b, peer, "--min-version=1", "--max-version=1", tree, theirs)
		peerWall, peerCPU, peerRSS = append(peerWall, p.wall), append(peerCPU, p.cpu), append(peerRSS, p.maxRSS)
		ratios = append(ratios, c.wall/p.wall)
		b.Logf("pair %d: cfs-image mkfs %.1f s (cpu %.1f s, RSS %.0f MiB), mkcomposefs %.1f s (cpu %.1f s, RSS %.0f MiB), ratio %.2f",
			i+1, c.wall, c.cpu, c.maxRSS, p.wall, p.cpu, p.maxRSS, c.wall/p.wall)
		a, err1 := os.ReadFile(ours)
		t, err2 := os.ReadFile(theirs)
		if err1 != nil || err2 != nil || !bytes.Equal(a, t) {
			b.Fatalf("cfs-image mkfs and mkcomposefs wrote different images of %s (%v, %v)", tree, err1, err2)
		}
	}
	entries := float64(img.Stats.Entries)
	b.ReportMetric(benchpairs.Median(cfsWall), "s-cfs-image")
	b.ReportMetric(benchpairs.Median(cfsRSS), "MiB-rss-cfs-image")
	b.ReportMetric(entries/benchpairs.Median(cfsRSS), "entries/MiB")
	if peer == "" {
		b.Logf("%d entries; medians of %d runs: cfs-image mkfs %.1f s (cpu %.1f s), peak RSS %.0f MiB = %.0f entries/MiB; no mkcomposefs to compare with",
			img.Stats.Entries, pairs, benchpairs.Median(cfsWall), benchpairs.Median(cfsCPU), benchpairs.Median(cfsRSS), entries/benchpairs.Median(cfsRSS))
		return
	}
	b.ReportMetric(benchpairs.Median(peerWall), "s-mkcomposefs")
	b.ReportMetric(benchpairs.Median(peerRSS), "MiB-rss-mkcomposefs")
	b.ReportMetric(benchpairs.Median(ratios), "ratio")
	b.Logf("%d entries, images identical; medians of %d interleaved pairs: cfs-image mkfs %.1f s (cpu %.1f s), mkcomposefs %.1f s (cpu %.1f s), ratio %.2f (target <= 0.7); peak RSS %.0f MiB = %.0f entries/MiB vs mkcomposefs %.0f MiB (target: at most mkcomposefs's)",
		img.Stats.Entries, pairs, benchpairs.Median(cfsWall), benchpairs.Median(cfsCPU), benchpairs.Median(peerWall), benchpairs.Median(peerCPU), benchpairs.Median(ratios),
		benchpairs.Median(cfsRSS), entries/benchpairs.Median(cfsRSS), benchpairs.Median(peerRSS))
}
