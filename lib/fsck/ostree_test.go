package fsck_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsck"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

// clonedOstreeHost is an ostree host whose repository holds the image's
// files cloned from composefs, as cfs-clone --to ostree leaves it.
func clonedOstreeHost(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, 1)
	im := f.images[0]
	im.Synthesized = true
	f.host = sysroottest.Ostree(t, f.root, []sysroottest.Deployment{{Image: im}}, 0)
	repo, err := composefs.Open(filepath.Join(f.root, "composefs"))
	if err != nil {
		t.Fatal(err)
	}
	rec, tree, err := pull.FromRepository(repo, im.ManifestDigest())
	if err != nil {
		t.Fatal(err)
	}
	var list bytes.Buffer
	err = pull.WriteList(&list, rec, tree, repo)
	repo.Close()
	if err != nil {
		t.Fatal(err)
	}
	orepo, err := ostree.Open(filepath.Join(f.root, "ostree", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer orepo.Close()
	var annotated bytes.Buffer
	if _, err = clone.ToOstree(context.Background(), orepo, &list, &annotated, clone.Options{}); err != nil {
		t.Fatal(err)
	}
	// Committed, so that ostree fsck, which checks what commits reach,
	// sees the cloned objects too.
	if _, err := ostreeimport.Import(context.Background(), orepo, &annotated, ostreeimport.Options{Ref: "cloned"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// ostreeObjects lists the repository's objects of one type (".file"...),
// regular files over minSize (-1: symlinks) first found.
func ostreeObjects(t *testing.T, repo, ext string, symlink bool, minSize int64) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ext) {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if symlink == (fi.Mode()&fs.ModeSymlink != 0) && fi.Size() > minSize {
			out = append(out, p)
		}
		return nil
	})
	if len(out) == 0 {
		t.Fatalf("no %s objects in %s", ext, repo)
	}
	return out
}

// TestObjectsOstreeOwnCheck: on a bare repository our own check runs
// instead of ostree fsck, hashes the cloned file objects in the read of
// the composefs objects they share extents with, and finds what ostree
// fsck finds: a file object's bytes or metadata changed, a symlink
// object's owner, a damaged dirtree, a missing file object. ostree fsck
// is the oracle for each damage.
func TestObjectsOstreeOwnCheck(t *testing.T) {
	damages := []struct {
		name   string
		damage func(t *testing.T, repo string) string // returns what the detail must name
	}{
		{"file bytes", func(t *testing.T, repo string) string {
			p := ostreeObjects(t, repo, ".file", false, 4096)[0]
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 1
			// Rewrite in place: the changed block is copied on write, the
			// others stay shared with the composefs object.
			fd, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			if _, err := fd.WriteAt(b[len(b)/2:len(b)/2+1], int64(len(b)/2)); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(p)
		}},
		{"file mode", func(t *testing.T, repo string) string {
			p := ostreeObjects(t, repo, ".file", false, 4096)[0]
			fi, _ := os.Stat(p)
			if err := os.Chmod(p, fi.Mode().Perm()^0o001); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(p)
		}},
		{"symlink owner", func(t *testing.T, repo string) string {
			p := ostreeObjects(t, repo, ".file", true, -1)[0]
			if err := os.Lchown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(p)
		}},
		{"dirtree", func(t *testing.T, repo string) string {
			p := ostreeObjects(t, repo, ".dirtree", false, 64)[0]
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 1
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(p)
		}},
		{"missing file", func(t *testing.T, repo string) string {
			p := ostreeObjects(t, repo, ".file", false, 0)[0]
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(p)
		}},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			f := clonedOstreeHost(t)
			repo := filepath.Join(f.root, "ostree", "repo")
			rep := f.objects(false)
			if !rep.OK || !rep.OstreeChecked || rep.OstreeObjectsChecked == 0 || rep.OstreeSharedReads == 0 {
				t.Fatalf("clean cloned host: ok %v, ostree objects checked %d, hashed in composefs reads %d: %+v",
					rep.OK, rep.OstreeObjectsChecked, rep.OstreeSharedReads, rep.Problems)
			}
			name := d.damage(t, repo)
			if out, err := exec.Command("ostree", "fsck", "--repo="+repo).CombinedOutput(); err == nil {
				t.Fatalf("the oracle does not see the damage either:\n%s", out)
			}
			rep = f.objects(false)
			found := false
			for _, p := range rep.Problems {
				if p.Code == fsck.CodeOstreeFsck && p.Path == repo && strings.Contains(p.Detail, name) {
					found = true
				}
			}
			if rep.OK || !found {
				t.Errorf("damage to %s not reported: %+v", name, rep.Problems)
			}
		})
	}
}
