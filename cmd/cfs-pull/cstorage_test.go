package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// cstore is a containers-storage store made by skopeo, the way podman
// fills one, on a test filesystem.
type cstore struct {
	graph, run string
}

func (s cstore) ref(name string) string {
	return "containers-storage:[overlay@" + s.graph + "+" + s.run + "]" + name
}

// skopeoRef adds the driver option that keeps skopeo from leaving the
// overlay directory mounted on itself.
func (s cstore) skopeoRef(name string) string {
	return "containers-storage:[overlay@" + s.graph + "+" + s.run + ":overlay.skip_mount_home=true]" + name
}

func newCStore(t *testing.T, dir string) cstore {
	t.Helper()
	return cstore{graph: filepath.Join(dir, "storage"), run: filepath.Join(dir, "run")}
}

func skopeoCopy(t *testing.T, from, to string) {
	t.Helper()
	skopeo := testfs.RequireTool(t, "skopeo")
	cmd := exec.Command(skopeo, "--insecure-policy", "copy", "--quiet", from, to)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy %s %s: %v\n%s", from, to, err, out)
	}
}

// storeImage puts img into a fresh store on fs with skopeo, named name.
func storeImage(t *testing.T, fs *testfs.FS, img *testimage.Image, name string) cstore {
	t.Helper()
	layout := filepath.Join(fs.Dir, "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	s := newCStore(t, fs.Dir)
	skopeoCopy(t, "oci:"+layout+":latest", s.skopeoRef(name))
	return s
}

func TestPullFromContainersStorage(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	store := storeImage(t, fs, img, "localhost/cfs-cstor:1")

	// The same image pulled the ordinary way, for comparison.
	regRepo := filepath.Join(fs.Dir, "registry-composefs")
	reg := cfsPull(t, "--repo", regRepo, "--insecure-policy", "oci:"+filepath.Join(fs.Dir, "layout")+":latest")
	if reg.err != nil {
		t.Fatalf("cfs-pull oci: %v\n%s", reg.err, reg.stderr)
	}
	regRec, regEntries := readList(t, reg.stdout)

	repoDir := filepath.Join(fs.Dir, "composefs")
	res := cfsPull(t, "--repo", repoDir, "--reflink", "always", store.ref("localhost/cfs-cstor:1"))
	if res.err != nil {
		t.Fatalf("cfs-pull containers-storage: %v\n%s", res.err, res.stderr)
	}
	rec, entries := readList(t, res.stdout)
	if rec.Stores.Composefs.Image != regRec.Stores.Composefs.Image {
		t.Errorf("composefs image %s, a pull of the OCI layout gives %s", rec.Stores.Composefs.Image, regRec.Stores.Composefs.Image)
	}
	if rec.ManifestDigest != regRec.ManifestDigest || rec.Stores.Composefs.Tag != regRec.Stores.Composefs.Tag {
		t.Errorf("manifest %s tag %s, the OCI pull %s %s", rec.ManifestDigest, rec.Stores.Composefs.Tag, regRec.ManifestDigest, regRec.Stores.Composefs.Tag)
	}
	cs := rec.Stores.ContainersStorage
	if cs == nil || cs.ImageID != img.ConfigDigest.Encoded() || cs.Root != store.graph {
		t.Errorf("stores.containersStorage = %+v", cs)
	}
	if len(entries) != len(regEntries) {
		t.Errorf("%d entries, the OCI pull %d", len(entries), len(regEntries))
	}
	// Same streams: every name under streams/ points at the same object.
	for _, name := range []string{"streams"} {
		a, b := listLinks(t, filepath.Join(regRepo, name)), listLinks(t, filepath.Join(repoDir, name))
		if a != b {
			t.Errorf("%s differ:\nOCI pull:\n%s\ncontainers-storage:\n%s", name, a, b)
		}
	}

	// Every object shares all its extents with the store's files.
	repo, err := composefs.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	files := 0
	for _, e := range entries {
		if e.Type != stream.TypeFile || e.Src == "" {
			continue
		}
		files++
		f, err := os.Open(e.Src)
		if err != nil {
			t.Fatal(err)
		}
		exts, err := reflink.Extents(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range exts {
			if !x.Shared() {
				t.Errorf("%s: object %s has an extent not shared: %+v", e.Path, e.Src, x)
				break
			}
		}
	}
	if files == 0 {
		t.Fatal("no object files in the list")
	}

	// Again: nothing new.
	again := cfsPull(t, "--repo", repoDir, store.ref(img.ConfigDigest.Encoded()))
	if again.err != nil {
		t.Fatalf("second import: %v\n%s", again.err, again.stderr)
	}
	if !bytes.Contains(again.stderr, []byte("already present 3; objects reflinked 0")) {
		t.Errorf("second import wrote again:\n%s", again.stderr)
	}
}

// listLinks lists the symlinks below dir with their targets, one a line.
func listLinks(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			b.WriteString(rel + " -> " + target + "\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
