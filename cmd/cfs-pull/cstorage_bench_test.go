package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
)

// usedBytes is how much of the filesystem holding dir is in use.
func usedBytes(b *testing.B, dir string) int64 {
	b.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// BenchmarkImportContainersStorageLarge imports the ~1 GiB, 30k-file
// benchmark image into a composefs repository from containers-storage
// (cfs-pull containers-storage:, cloning the layers' files) and from an
// OCI layout (cfs-pull oci:, decompressing and writing), on one loop XFS,
// and reports both side by side with the disk the import took.
func BenchmarkImportContainersStorageLarge(b *testing.B) {
	testfs.RequirePrivileged(b)
	testfs.RequireTool(b, "skopeo")
	img, err := testimage.Large(1)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, l := range img.Layers {
		size += l.DiffSize
	}
	fs := testfs.XFS(b, 8<<30)
	layout := fs.Path("layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		b.Fatal(err)
	}
	s := cstore{graph: fs.Path("storage"), run: fs.Path("run")}
	const name = "localhost/cfs-bench:large"
	skopeo := testfs.RequireTool(b, "skopeo")
	timed(b, skopeo, "--insecure-policy", "copy", "--quiet", "oci:"+layout+":latest", s.skopeoRef(name))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := fs.Path("run-" + string(rune('a'+i)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		peer := timed(b, binary, "--repo", filepath.Join(dir, "oci-composefs"), "--insecure-policy", "--quiet", "--output", "none", "oci:"+layout+":latest")
		before := usedBytes(b, fs.Dir)
		cfs := timed(b, binary, "--repo", filepath.Join(dir, "composefs"), "--quiet", "--output", "none", "--reflink", "always", s.ref(name))
		extra := usedBytes(b, fs.Dir) - before
		ratio := cfs.wall.Seconds() / peer.wall.Seconds()
		b.ReportMetric(cfs.wall.Seconds(), "s-cstorage")
		b.ReportMetric(peer.wall.Seconds(), "s-oci")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(float64(cfs.maxRSS)/1024, "MiB-rss")
		b.ReportMetric(100*float64(extra)/float64(size), "%disk")
		b.Logf("import of %.0f MiB, %d layers: cfs-pull containers-storage: %.1f s (peak RSS %d MiB, %.1f MiB of disk = %.2f%% of the image), cfs-pull oci: %.1f s (peak RSS %d MiB); ratio %.2f (target <= 0.3, disk <= 2%%, RSS < 100 MiB)",
			float64(size)/(1<<20), len(img.Layers), cfs.wall.Seconds(), cfs.maxRSS/1024, float64(extra)/(1<<20), 100*float64(extra)/float64(size), peer.wall.Seconds(), peer.maxRSS/1024, ratio)
	}
}
