package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/splitstream"
	"github.com/cfs-project/cfs/lib/stream"
)

var binary, cfsImage string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	dir, err := os.MkdirTemp("", "cfs-pull-test-")
	if err != nil {
		panic(err)
	}
	bins, err := testbin.Build(dir, "github.com/cfs-project/cfs/cmd/cfs-pull", "github.com/cfs-project/cfs/cmd/cfs-image")
	if err != nil {
		panic(err)
	}
	binary, cfsImage = bins["cfs-pull"], bins["cfs-image"]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr []byte
	err            error
}

func cfsPull(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.Bytes(), errb.Bytes(), err}
}

func ociLayout(t *testing.T, opts testimage.Options) (*testimage.Image, string) {
	t.Helper()
	img, err := testimage.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(dir, "latest"); err != nil {
		t.Fatal(err)
	}
	return img, "oci:" + dir + ":latest"
}

func readList(t *testing.T, data []byte) (*stream.Image, []*stream.Entry) {
	t.Helper()
	img, entries, err := stream.ReadAll(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return img, entries
}

func TestPullOCILayout(t *testing.T) {
	img, src := ociLayout(t, testimage.Options{Seed: 1})
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", src)
	if res.err != nil {
		t.Fatalf("cfs-pull: %v\n%s", res.err, res.stderr)
	}
	rec, entries := readList(t, res.stdout)
	if rec.ManifestDigest != img.ManifestDigest.String() || rec.ConfigDigest != img.ConfigDigest.String() {
		t.Errorf("image record names %s/%s", rec.ManifestDigest, rec.ConfigDigest)
	}
	if rec.Manifest != string(img.Manifest) || rec.Config != string(img.Config) {
		t.Error("manifest or config bytes changed")
	}
	tag := "localhost/bootc-" + img.ManifestDigest.String()
	if rec.Stores.Composefs == nil || rec.Stores.Composefs.Tag != tag || len(rec.Stores.Composefs.Image) != 128 {
		t.Errorf("composefs store %+v", rec.Stores.Composefs)
	}

	// Every path of the image is in the list, with the bytes behind src.
	want := img.ExpectedTree()
	byPath := map[string]*stream.Entry{}
	for _, e := range entries {
		byPath[strings.TrimPrefix(e.Path, "/")] = e
	}
	for _, p := range want.Paths() {
		e, ok := byPath[p]
		if !ok {
			t.Errorf("%s missing from the object list", p)
			continue
		}
		w := want[p]
		if w.Type == testimage.TypeRegular && e.Type == stream.TypeFile {
			if e.Size != w.Size {
				t.Errorf("%s: size %d, want %d", p, e.Size, w.Size)
			}
			var got []byte
			if e.Src != "" {
				got, _ = os.ReadFile(e.Src)
			} else {
				got = e.Inline
			}
			if sum := sha256.Sum256(got); "sha256:"+hex.EncodeToString(sum[:]) != w.Digest.String() {
				t.Errorf("%s: content differs", p)
			}
		}
	}
	if len(entries) != len(want.Paths())+1 {
		t.Errorf("%d entries, the image has %d paths plus the root", len(entries), len(want.Paths()))
	}

	repo, err := composefs.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	if d, err := repo.ResolveTag(tag); err != nil || d != img.ManifestDigest.String() {
		t.Errorf("tag: %q %v", d, err)
	}
	// A layer rebuilt from its splitstream is the original tar, byte for byte.
	for _, l := range img.Layers {
		sr, _, err := repo.OpenStream(composefs.LayerContentID(l.DiffID.String()), splitstream.ContentOCILayer)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := sr.Reassemble(h, func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) }); err != nil {
			t.Fatal(err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.DiffID.String() {
			t.Errorf("layer %s reassembles to %s", l.DiffID, got)
		}
	}

	// Pulling again writes nothing new and gives the same list.
	again := cfsPull(t, "--repo", repoDir, "--insecure-policy", src)
	if again.err != nil {
		t.Fatalf("second pull: %v\n%s", again.err, again.stderr)
	}
	if !bytes.Contains(again.stderr, []byte("already present 3; objects new 0")) {
		t.Errorf("second pull fetched again:\n%s", again.stderr)
	}
	if !bytes.Equal(again.stdout, res.stdout) {
		t.Error("second pull gave a different object list")
	}

	// --from-repo needs no source and gives the same tree.
	fromRepo := cfsPull(t, "--repo", repoDir, "--from-repo", tag)
	if fromRepo.err != nil {
		t.Fatalf("--from-repo: %v\n%s", fromRepo.err, fromRepo.stderr)
	}
	_, entries2 := readList(t, fromRepo.stdout)
	if len(entries2) != len(entries) {
		t.Errorf("--from-repo gave %d entries, the pull %d", len(entries2), len(entries))
	}
}

// TestPullMountsAsTheImage mounts the EROFS image the pull made with
// cfs-image, the repository's objects as the data layer, and compares
// every file with the image's expected tree: the kernel is the oracle.
func TestPullMountsAsTheImage(t *testing.T) {
	testfs.RequirePrivileged(t)
	img, src := ociLayout(t, testimage.Options{Seed: 2})
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--output", "none", src)
	if res.err != nil {
		t.Fatalf("cfs-pull: %v\n%s", res.err, res.stderr)
	}
	repo, err := composefs.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	entries, _ := os.ReadDir(filepath.Join(repoDir, "images"))
	if len(entries) != 1 {
		t.Fatalf("%d images in the repository", len(entries))
	}
	mnt := t.TempDir()
	mount := exec.Command(cfsImage, "mount", "--objects", filepath.Join(repoDir, "objects"), filepath.Join(repoDir, "images", entries[0].Name()), mnt)
	if out, err := mount.CombinedOutput(); err != nil {
		t.Fatalf("cfs-image mount: %v\n%s", err, out)
	}
	defer func() {
		if out, err := exec.Command(cfsImage, "umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("cfs-image umount: %v\n%s", err, out)
		}
	}()
	err = img.ExpectedTree().CompareDir(mnt, testimage.CompareOptions{
		// composefs keeps only security.capability from tar xattrs and
		// empties /run; implied directories get the mount's mtime rules.
		Xattr: func(name string) bool { return name == "security.capability" },
		Skip:  func(p string) bool { return p == "run" || strings.HasPrefix(p, "run/") },
	})
	if err != nil {
		t.Error(err)
	}
}
