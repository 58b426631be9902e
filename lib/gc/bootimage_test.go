package gc_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testhost"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsck"
	"github.com/cfs-project/cfs/lib/gc"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

// TestCollectKeepsBootImages: the boot image of a live image survives a
// collection through the config stream's composefs.image.boot.v1 alone
// (the deployment here names the plain image, so no additional root
// protects the boot image), and cfs-fsck objects checks it; the boot
// image of an image no deployment pins goes with it. Deleting the live
// boot image afterwards is a problem fsck reports.
func TestCollectKeepsBootImages(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	repoPath := filepath.Join(root, "composefs")
	gen := func(v string) *testimage.Image {
		img, err := testimage.Generate(testimage.Options{Seed: 17, Version: v, UTF8Names: true, Bootable: true})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	old := testhost.Pull(t, repoPath, fs.Dir, gen("4.0"), "ostree-unverified-registry:quay.io/example/os:4.0")
	cur := testhost.Pull(t, repoPath, fs.Dir, gen("4.1"), "ostree-unverified-registry:quay.io/example/os:4.1")
	bootOf := func(im sysroottest.Image) string {
		repo, err := composefs.Open(repoPath)
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		img, err := oci.OpenImage(repo, im.ManifestDigest())
		if err != nil {
			t.Fatal(err)
		}
		if img.BootImageID == nil {
			t.Fatalf("image %s has no boot image", im.ManifestDigest())
		}
		return hex.EncodeToString(img.BootImageID)
	}
	oldBoot, curBoot := bootOf(old), bootOf(cur)
	if oldBoot == curBoot || curBoot == cur.ImageVerity {
		t.Fatalf("boot images %s, %s; image %s", oldBoot, curBoot, cur.ImageVerity)
	}
	host := sysroottest.Composefs(t, root, []sysroottest.Deployment{{Image: cur}}, 0, sysroottest.BLS, false)
	h, err := sysroot.Load(root, sysroot.Options{Cmdline: host.Cmdline})
	if err != nil {
		t.Fatal(err)
	}
	res, err := gc.Collect(h, gc.Options{RunRoot: fs.Path("run")})
	if err != nil {
		t.Fatal(err)
	}
	if res.ImagesPruned == 0 {
		t.Errorf("nothing pruned from images/: %+v", res)
	}
	objectOf := func(id string) string { return filepath.Join(repoPath, "objects", id[:2], id[2:]) }
	for _, p := range []string{filepath.Join(repoPath, "images", curBoot), objectOf(curBoot)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the live image's boot image was collected: %v", err)
		}
	}
	for _, p := range []string{filepath.Join(repoPath, "images", oldBoot), objectOf(oldBoot)} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s of the dead image's boot image survived: %v", p, err)
		}
	}
	checkComplete(t, repoPath, cur.ManifestDigest())

	rep, err := fsck.Objects(h, fsck.ObjectsOptions{Ostree: "-", RunRoot: fs.Path("run")})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("fsck objects after the collection: %+v", rep.Problems)
	}
	if err := os.Remove(objectOf(curBoot)); err != nil {
		t.Fatal(err)
	}
	rep, err = fsck.Objects(h, fsck.ObjectsOptions{Ostree: "-", RunRoot: fs.Path("run")})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range rep.Problems {
		found = found || strings.Contains(p.Path+" "+p.Detail, curBoot[2:18])
	}
	if rep.OK || !found {
		t.Errorf("fsck objects with the boot image deleted: ok %v, problems %+v", rep.OK, rep.Problems)
	}
}
