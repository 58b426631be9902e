package fsck_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/benchpairs"
	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/fsck"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// BenchmarkObjectsLarge: `cfs-fsck objects` on the large image (~30k
// files, 1 GiB) pulled into composefs and synthesized into ostree
// (cfs-pull | cfs-clone --to ostree | cfs-ostree-import), beside `ostree
// fsck` of that repository. Ours is timed twice: the composefs repository
// alone, and all stores (ostree fsck then runs beside our check). Target:
// all stores within 1.0x ostree fsck's wall time, i.e. our composefs check
// hidden behind it.
func BenchmarkObjectsLarge(b *testing.B) {
	img, err := testimage.Generate(testimage.Options{Seed: 1, Scale: testimage.LargeScale, Name: "cfs-large", UTF8Names: true})
	if err != nil {
		b.Fatal(err)
	}
	fs := testfs.XFS(b, 8<<30)
	layout := fs.Path("layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		b.Fatal(err)
	}
	benchObjects(b, fs, "oci:"+layout+":latest", 0)
	os.RemoveAll(layout)
}

// BenchmarkObjects100k is BenchmarkObjectsLarge on the large generated
// image (testimage.Scale100k, ~119k entries, ~3.6 GB), in
// CFS_BENCH_PAIRS interleaved pairs (default 1), medians reported.
func BenchmarkObjects100k(b *testing.B) {
	c := testimage.Cached(b, testimage.Scale100k(1))
	benchObjects(b, testfs.XFS(b, 16<<30), c.Ref, c.Stats.Entries)
}

func benchObjects(b *testing.B, fs *testfs.FS, ref string, entries int) {
	testfs.RequirePrivileged(b)
	testfs.RequireTool(b, "ostree")
	bash := testfs.RequireTool(b, "bash")
	bins, err := testbin.Build(b.TempDir(), "github.com/cfs-project/cfs/cmd/cfs-pull", "github.com/cfs-project/cfs/cmd/cfs-clone", "github.com/cfs-project/cfs/cmd/cfs-ostree-import")
	if err != nil {
		b.Fatal(err)
	}
	root := fs.Path("sysroot")
	ostreeRepo := filepath.Join(root, "ostree", "repo")
	if err := os.MkdirAll(ostreeRepo, 0o755); err != nil {
		b.Fatal(err)
	}
	run := func(script string) time.Duration {
		cmd := exec.Command(bash, "-o", "pipefail", "-c", script)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", script, err, errb.Bytes())
		}
		return time.Since(start)
	}
	run("ostree init --repo=" + ostreeRepo + " --mode=bare")
	run(bins["cfs-pull"] + " --repo " + filepath.Join(root, "composefs") + " --insecure-policy -q " + ref + " | " +
		bins["cfs-clone"] + " --to ostree --repo " + ostreeRepo + " -q | " + bins["cfs-ostree-import"] + " --repo " + ostreeRepo + " > /dev/null")
	h := &sysroot.Host{Root: root, Kind: sysroot.KindOstree}

	drop := func() {
		unix.Sync()
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	}
	objects := func(ostree string) (time.Duration, *fsck.ObjectsReport) {
		drop()
		start := time.Now()
		rep, err := fsck.Objects(h, fsck.ObjectsOptions{Ostree: ostree, RunRoot: fs.Path("run")})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK {
			b.Fatalf("problems in a fresh repository: %+v", rep.Problems)
		}
		return time.Since(start), rep
	}
	pairs := benchpairs.Count(1)
	for i := 0; i < b.N; i++ {
		var ours, theirs, ratios, alone []float64
		var rep *fsck.ObjectsReport
		for range pairs {
			var composefsOnly, all time.Duration
			composefsOnly, _ = objects("-")
			all, rep = objects("")
			drop()
			t := run("ostree fsck --repo=" + ostreeRepo + " > /dev/null")
			alone = append(alone, composefsOnly.Seconds())
			ours, theirs = append(ours, all.Seconds()), append(theirs, t.Seconds())
			ratios = append(ratios, all.Seconds()/t.Seconds())
			b.Logf("pair: cfs-fsck objects %.2f s on composefs alone, %.2f s on all stores; ostree fsck %.2f s; ratio %.2f",
				composefsOnly.Seconds(), all.Seconds(), t.Seconds(), all.Seconds()/t.Seconds())
		}
		om, pm, rm := benchpairs.Median(ours), benchpairs.Median(theirs), benchpairs.Median(ratios)
		b.ReportMetric(benchpairs.Median(alone), "s-cfs-composefs")
		b.ReportMetric(om, "s-cfs-all-stores")
		b.ReportMetric(pm, "s-ostree-fsck")
		b.ReportMetric(rm, "ratio")
		b.Logf("%d entries; %d composefs objects (%d kernel-measured), %d ostree objects checked (%d hashed in the composefs read), %d streams, %d images; %d pairs, medians:\n"+
			"| step | ours s | peer s | ratio | target |\n"+
			"| cfs-fsck objects (all stores) vs ostree fsck | %.2f | %.2f | %.2f | <= 1.0 |",
			entries, rep.ObjectsChecked, rep.KernelMeasured, rep.OstreeObjectsChecked, rep.OstreeSharedReads, rep.StreamsChecked, rep.ImagesChecked, len(ours),
			om, pm, rm)
	}
}
