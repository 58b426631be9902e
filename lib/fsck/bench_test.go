package fsck_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	testfs.RequirePrivileged(b)
	testfs.RequireTool(b, "ostree")
	bash := testfs.RequireTool(b, "bash")
	img, err := testimage.Generate(testimage.Options{Seed: 1, Scale: testimage.LargeScale, Name: "cfs-large", UTF8Names: true})
	if err != nil {
		b.Fatal(err)
	}
	fs := testfs.XFS(b, 8<<30)
	bins, err := testbin.Build(b.TempDir(), "github.com/cfs-project/cfs/cmd/cfs-pull", "github.com/cfs-project/cfs/cmd/cfs-clone", "github.com/cfs-project/cfs/cmd/cfs-ostree-import")
	if err != nil {
		b.Fatal(err)
	}
	root := fs.Path("sysroot")
	layout := fs.Path("layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		b.Fatal(err)
	}
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
	run(bins["cfs-pull"] + " --repo " + filepath.Join(root, "composefs") + " --insecure-policy -q oci:" + layout + ":latest | " +
		bins["cfs-clone"] + " --to ostree --repo " + ostreeRepo + " -q | " + bins["cfs-ostree-import"] + " --repo " + ostreeRepo + " > /dev/null")
	os.RemoveAll(layout)
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
	for i := 0; i < b.N; i++ {
		composefsOnly, rep := objects("-")
		all, _ := objects("")
		drop()
		theirs := run("ostree fsck --repo=" + ostreeRepo + " > /dev/null")
		b.ReportMetric(composefsOnly.Seconds(), "s-cfs-composefs")
		b.ReportMetric(all.Seconds(), "s-cfs-all-stores")
		b.ReportMetric(theirs.Seconds(), "s-ostree-fsck")
		b.ReportMetric(all.Seconds()/theirs.Seconds(), "ratio")
		b.Logf("%d composefs objects (%d kernel-measured), %d streams, %d images: cfs-fsck objects %.2f s on composefs alone, %.2f s on all stores; ostree fsck %.2f s; ratio %.2f (target <= 1.0)",
			rep.ObjectsChecked, rep.KernelMeasured, rep.StreamsChecked, rep.ImagesChecked, composefsOnly.Seconds(), all.Seconds(), theirs.Seconds(), all.Seconds()/theirs.Seconds())
	}
}
