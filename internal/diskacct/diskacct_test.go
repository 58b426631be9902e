package diskacct

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/reflink"
)

// TestWalk lays out a body, its clone and a metadata file on XFS and
// checks each lands in its class: the clone's and the original's extents
// both shared, the metadata file's unshared, every entry one inode.
func TestWalk(t *testing.T) {
	fs := testfs.XFS(t, 0)
	root := fs.Path("tree")
	if err := os.MkdirAll(filepath.Join(root, "diff"), 0o755); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("b"), 64<<10)
	if err := os.WriteFile(filepath.Join(root, "diff", "a"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "diff", "written"), body[:8192], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reflink.Clone(filepath.Join(root, "diff", "b"), filepath.Join(root, "diff", "a"), reflink.Always); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "meta.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("meta.json", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	u, err := Walk(root, func(rel string) bool { return strings.HasPrefix(rel, "diff/") })
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{Inodes: 7, SharedBytes: 2 * 64 << 10, BodyBytes: 8192, BodyFiles: 1, MetaBytes: 4096, MetaFiles: 1}
	u.DirBytes = 0 // short-form directories hold no blocks; the size is XFS's to choose
	if u != want {
		t.Errorf("Walk = %+v, want %+v", u, want)
	}
	isize, err := InodeSize(fs.Path())
	if err != nil {
		t.Fatal(err)
	}
	if isize < 256 || isize > 2048 {
		t.Errorf("InodeSize = %d", isize)
	}
	report := Report(1<<20, 100<<20, isize, u)
	if !strings.Contains(report, "bodies written 0.0 MiB = 0.01% (1)") || !strings.Contains(report, "beyond the bodies 1.0 MiB = 0.99%") {
		t.Errorf("Report = %s", report)
	}
}
