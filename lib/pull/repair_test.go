package pull

import (
	"context"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/fsverity"
)

func pullLayout(t *testing.T, repoPath, layout string) (*Result, error) {
	t.Helper()
	repo, err := composefs.Create(repoPath, fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	return pullInto(t, context.Background(), repo, layout, Options{})
}

// objectFiles lists the regular files under objects/ by their name.
func objectFiles(t *testing.T, repo string) map[string]string {
	t.Helper()
	files := map[string]string{}
	root := filepath.Join(repo, "objects")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			files[filepath.Dir(rel)+filepath.Base(rel)] = p
		}
		return err
	})
	return files
}

func checkDigests(t *testing.T, repo string) {
	t.Helper()
	for name, p := range objectFiles(t, repo) {
		got, err := fsverity.DigestFile(p, fsverity.SHA512)
		if err != nil || hex.EncodeToString(got) != name {
			t.Errorf("object %s has digest %x (%v)", name, got, err)
		}
	}
}

// TestRepullRepairsStore: a power cut mid-pull left every object a 0-byte
// file under its name, and one object deleted blocks every stored layer
// that names it. The next pull of the image must not trust either: it
// fetches the layers again and replaces what is wrong, instead of failing
// forever on "stored layer …: archive/tar: invalid tar header".
func TestRepullRepairsStore(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 3, Scale: 2})
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	for _, damage := range []string{"truncate every object", "delete one file object"} {
		t.Run(damage, func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "repo")
			first, err := pullLayout(t, repo, layout)
			if err != nil {
				t.Fatal(err)
			}
			files := objectFiles(t, repo)
			if damage == "truncate every object" {
				for _, p := range files {
					if err := os.Truncate(p, 0); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				victim := firstObject(first.Tree)
				if victim == nil {
					t.Fatal("the image has no file stored as an object")
				}
				if err := os.Remove(filepath.Join(repo, "objects", composefs.ObjectName(victim))); err != nil {
					t.Fatal(err)
				}
			}
			res, err := pullLayout(t, repo, layout)
			if err != nil {
				t.Fatalf("pull after the damage: %v", err)
			}
			if res.Present == len(res.DiffIDs) {
				t.Errorf("no layer was fetched again")
			}
			checkDigests(t, repo)
			if got := len(objectFiles(t, repo)); got < len(files) {
				t.Errorf("%d objects after the repair, %d before the damage", got, len(files))
			}
			if hex.EncodeToString(res.ImageID) != hex.EncodeToString(first.ImageID) {
				t.Errorf("image %x, first pull gave %x", res.ImageID, first.ImageID)
			}
		})
	}
}

func firstObject(d *fstree.Dir) []byte {
	for _, name := range d.Names() {
		switch in := d.Get(name).(type) {
		case *fstree.Leaf:
			if in.Object != nil {
				return in.Object
			}
		case *fstree.Dir:
			if id := firstObject(in); id != nil {
				return id
			}
		}
	}
	return nil
}
