package pull

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/bootimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
)

// pullImage pulls a generated image into repo.
func pullImage(t *testing.T, repo *composefs.Repository, opts testimage.Options) (*testimage.Image, *Result) {
	t.Helper()
	img, err := testimage.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{}
	policy, err := PolicyContext(sys, true)
	if err != nil {
		t.Fatal(err)
	}
	defer policy.Destroy()
	ctx := context.Background()
	src, err := Open(ctx, "oci:"+layout+":latest", sys, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	res, err := ToComposefs(ctx, repo, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return img, res
}

func newRepo(t *testing.T) *composefs.Repository {
	t.Helper()
	repo, err := composefs.Create(filepath.Join(t.TempDir(), "repo"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return repo
}

// TestPullWritesBootImage: a bootable image gets its boot image, named
// from the config stream, and the summary reports its id.
func TestPullWritesBootImage(t *testing.T) {
	repo := newRepo(t)
	img, res := pullImage(t, repo, testimage.Options{Seed: 3, Bootable: true, SELinux: true})
	if res.BootImageID == nil || res.BootNote != "" || res.Boot == nil || res.Boot.Kind != bootimage.BLS {
		t.Fatalf("boot image %x, note %q, boot %+v", res.BootImageID, res.BootNote, res.Boot)
	}
	if bytes.Equal(res.BootImageID, res.ImageID) {
		t.Fatal("the boot image equals the image: nothing was transformed")
	}
	if !repo.HasImage(res.BootImageID) {
		t.Fatalf("images/%x is missing", res.BootImageID)
	}
	stored, err := oci.OpenImage(repo, img.ManifestDigest.String())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.BootImageID, res.BootImageID) || !bytes.Equal(stored.ImageID, res.ImageID) {
		t.Errorf("config stream names boot image %x and image %x; pulled %x and %x", stored.BootImageID, stored.ImageID, res.BootImageID, res.ImageID)
	}
	sum := Summarize("x", img.ManifestDigest.String(), res)
	if sum.BootImage != hex.EncodeToString(res.BootImageID) || !strings.Contains(strings.Join(sum.Lines(), "\n"), "boot image "+sum.BootImage) {
		t.Errorf("summary %+v, lines %q", sum, sum.Lines())
	}
	// Pulling again gives the same ids: the boot image is deterministic.
	_, again := pullImage(t, repo, testimage.Options{Seed: 3, Bootable: true, SELinux: true})
	if !bytes.Equal(again.BootImageID, res.BootImageID) {
		t.Errorf("second pull: boot image %x, first %x", again.BootImageID, res.BootImageID)
	}
}

// TestPullWithoutBootDirs: the default test image has a kernel but no
// /boot or /sysroot, which the boot transform requires; it is stored
// as before, without a boot image, and the pull says why.
func TestPullWithoutBootDirs(t *testing.T) {
	repo := newRepo(t)
	img, res := pullImage(t, repo, testimage.Options{Seed: 3})
	if res.BootImageID != nil || !strings.Contains(res.BootNote, "/boot is missing") {
		t.Fatalf("boot image %x, note %q", res.BootImageID, res.BootNote)
	}
	stored, err := oci.OpenImage(repo, img.ManifestDigest.String())
	if err != nil {
		t.Fatal(err)
	}
	if stored.BootImageID != nil || stored.ImageID == nil {
		t.Errorf("config stream names boot image %x, image %x", stored.BootImageID, stored.ImageID)
	}
}

// TestPullSealedUKI builds an image honestly sealed the way image
// builders do it: the boot image id of the image without its UKI, then
// the UKI sealed for that id added under /boot in a last layer. The boot
// image does not change (the transform empties /boot), so the seal holds;
// a UKI sealed for another id is reported with both ids.
func TestPullSealedUKI(t *testing.T) {
	repo := newRepo(t)
	base := testimage.Options{Seed: 5, Bootable: true}
	_, unsealed := pullImage(t, repo, base)
	if unsealed.BootImageID == nil {
		t.Fatalf("no boot image: %s", unsealed.BootNote)
	}
	id := hex.EncodeToString(unsealed.BootImageID)

	sealed := base
	var err error
	if sealed.UKI, err = testimage.SealedUKI(t.TempDir(), base, id); err != nil {
		t.Fatal(err)
	}
	img, res := pullImage(t, repo, sealed)
	if len(img.Layers) != 4 {
		t.Fatalf("%d layers, want the UKI in a fourth", len(img.Layers))
	}
	if !bytes.Equal(res.BootImageID, unsealed.BootImageID) {
		t.Fatalf("boot image %x with the UKI, %x without: the UKI leaked into the boot image", res.BootImageID, unsealed.BootImageID)
	}
	if bytes.Equal(res.ImageID, unsealed.ImageID) {
		t.Fatal("the plain image did not change with the UKI layer")
	}
	if res.BootNote != "" || res.Boot.Kind != bootimage.UKI || len(res.Boot.Sealed()) != 1 || res.Boot.UKIs[0].Path != "/"+testimage.DefaultUKIPath {
		t.Fatalf("note %q, boot %+v", res.BootNote, res.Boot)
	}
	if err := res.Boot.CheckSealed(res.BootImageID); err != nil {
		t.Fatal(err)
	}

	wrong := base
	wrongID := strings.Repeat("0", 128)
	if wrong.UKI, err = testimage.SealedUKI(t.TempDir(), base, wrongID); err != nil {
		t.Fatal(err)
	}
	_, res = pullImage(t, repo, wrong)
	if !strings.Contains(res.BootNote, wrongID) || !strings.Contains(res.BootNote, id) {
		t.Fatalf("a UKI sealed for another image: note %q, want both ids", res.BootNote)
	}
}
