package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/benchpairs"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// requireAllShared fails unless every file object over 64 bytes shares
// its extents (FIEMAP): a clone that silently copied would still be fast
// on a warm cache and pass everything else.
func requireAllShared(b *testing.B, repo string) int {
	objects := 0
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(p, ".file") {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		shared, total, err := reflink.SharedBytes(f)
		if err != nil {
			return err
		}
		if total <= stream.InlineMax {
			return nil
		}
		objects++
		if shared == 0 || shared < total-4096 {
			return fmt.Errorf("%s: %d of %d bytes share extents", p, shared, total)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return objects
}

// BenchmarkCloneImport100k: the large generated image (testimage.Scale100k,
// ~119k entries, ~3.6 GB, sized like a real /usr), pulled into a composefs
// repo on loop XFS, then `cfs-clone --to ostree | cfs-ostree-import` into a
// bare repo beside `ostree commit --tree=dir=` of the same tree checked
// out, caches dropped before each, in CFS_BENCH_PAIRS interleaved pairs.
// Every file object over 64 bytes must share its extents and both
// commits must have the same ContentChecksum. Target: ratio <= 0.2.
func BenchmarkCloneImport100k(b *testing.B) {
	testfs.RequirePrivileged(b)
	gnuTime := testfs.RequireTool(b, "time")
	testfs.RequireTool(b, "ostree")
	c := testimage.Cached(b, testimage.Scale100k(1))
	fsys := testfs.XFS(b, 24<<30)
	composefs := fsys.Path("composefs")
	listFile := fsys.Path("list")
	shell(b, fmt.Sprintf("%s --repo %s --insecure-policy -q %s > %s", bins["cfs-pull"], composefs, c.Ref, listFile))
	mib := float64(c.Stats.Bytes) / (1 << 20)

	for i := 0; i < b.N; i++ {
		var ours, theirs, ratios []float64
		var rssMax int64
		for pair := range benchpairs.Count(1) {
			dir := fsys.Path(fmt.Sprintf("run%d-%d", i, pair))
			os.Mkdir(dir, 0o755)
			repo, oracle := filepath.Join(dir, "repo"), filepath.Join(dir, "oracle")
			initRepo(b, repo, "bare")
			initRepo(b, oracle, "bare")
			tmp := b.TempDir()
			rssClone, rssImport := filepath.Join(tmp, "rss-clone"), filepath.Join(tmp, "rss-import")

			dropCaches()
			o := shell(b, fmt.Sprintf("%s -f %%M -o %s %s --to ostree --repo %s -q < %s | %s -f %%M -o %s %s --repo %s > /dev/null",
				gnuTime, rssClone, bins["cfs-clone"], repo, listFile, gnuTime, rssImport, bins["cfs-ostree-import"], repo))
			ref := refs(b, repo)
			checkout := filepath.Join(dir, "checkout")
			mustRun(b, nil, "ostree", "checkout", "--repo="+repo, ref, checkout)
			dropCaches()
			p := shell(b, fmt.Sprintf("ostree commit --repo=%s --tree=dir=%s -b oracle --no-bindings --timestamp=@1700000000 > /dev/null", oracle, checkout))

			if got, want := contentChecksum(b, repo, ref), contentChecksum(b, oracle, "oracle"); got != want {
				b.Fatalf("ContentChecksum %s, ostree commit of the same tree gives %s", got, want)
			}
			shared := requireAllShared(b, repo)
			rss := max(readKiB(rssClone), readKiB(rssImport))
			rssMax = max(rssMax, rss)
			ours, theirs = append(ours, o.Seconds()), append(theirs, p.Seconds())
			ratios = append(ratios, o.Seconds()/p.Seconds())
			b.Logf("pair %d: cfs-clone|cfs-ostree-import %.2f s (peak RSS clone %d MiB, import %d MiB), ostree commit %.2f s, ratio %.3f; %d objects > 64 B all share extents, ContentChecksum equal",
				pair, o.Seconds(), readKiB(rssClone)/1024, readKiB(rssImport)/1024, p.Seconds(), o.Seconds()/p.Seconds(), shared)
			os.RemoveAll(dir)
		}
		om, pm, rm := benchpairs.Median(ours), benchpairs.Median(theirs), benchpairs.Median(ratios)
		b.ReportMetric(om, "s-cfs")
		b.ReportMetric(pm, "s-ostree-commit")
		b.ReportMetric(rm, "ratio")
		b.ReportMetric(float64(rssMax)/1024, "MiB-rss")
		b.ReportMetric(float64(c.Stats.Entries)/(float64(rssMax)/1024), "entries/MiB-rss")
		benchTable(b, fmt.Sprintf("%d entries, %.0f MiB, %d pairs, medians", c.Stats.Entries, mib, len(ours)),
			benchRow{"cfs-clone --to ostree | cfs-ostree-import vs ostree commit --tree=dir=", om, pm, rm, rssMax, c.Stats.Entries, "<= 0.2"})
	}
}

type benchRow struct {
	step       string
	ours, peer float64 // seconds
	ratio      float64 // median of the per-pair ratios
	rssKiB     int64
	entries    int
	target     string
}

// benchTable prints rows as a table in the benchmark's log, which `make
// bench` shows.
func benchTable(b *testing.B, title string, rows ...benchRow) {
	b.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\n", title)
	fmt.Fprintf(&sb, "| %-70s | %8s | %8s | %6s | %8s | %10s | %6s |\n", "step", "ours s", "peer s", "ratio", "RSS MiB", "entries/MiB", "target")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %-70s | %8.2f | %8.2f | %6.3f | %8d | %10.0f | %6s |\n", r.step, r.ours, r.peer, r.ratio, r.rssKiB/1024, float64(r.entries)/(float64(r.rssKiB)/1024), r.target)
	}
	b.Log(sb.String())
}
