// Package testhost puts real generated images into a test sysroot's
// composefs repository and describes them for lib/sysroot/sysroottest,
// which lays out the host around them: the fixture of the fsck and GC
// tests, where every store holds real bytes.
package testhost

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

// Generate makes the test image of one release: images of one seed that
// differ in version share their first two layers, as releases of an OS do.
func Generate(t testing.TB, seed int64, version string) *testimage.Image {
	t.Helper()
	img, err := testimage.Generate(testimage.Options{Seed: seed, Version: version, UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Pull stores img in the composefs repository at repoPath (created if
// needed) through an OCI layout in scratch, with bootc's tag, and returns
// it as a sysroottest image with the given origin reference.
func Pull(t testing.TB, repoPath, scratch string, img *testimage.Image, ref string) sysroottest.Image {
	t.Helper()
	im, err := PullErr(repoPath, scratch, img, ref)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// PullErr is Pull for a goroutine other than the test's, which must not
// call t.Fatal.
func PullErr(repoPath, scratch string, img *testimage.Image, ref string) (sysroottest.Image, error) {
	layout := filepath.Join(scratch, "layout-"+img.ManifestDigest.Encoded()[:12])
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		return sysroottest.Image{}, err
	}
	if err := os.MkdirAll(filepath.Dir(repoPath), 0o755); err != nil {
		return sysroottest.Image{}, err
	}
	repo, err := composefs.Create(repoPath, fsverity.SHA512)
	if err != nil {
		return sysroottest.Image{}, err
	}
	defer repo.Close()
	ctx := context.Background()
	policy, err := pull.PolicyContext(nil, true)
	if err != nil {
		return sysroottest.Image{}, err
	}
	defer policy.Destroy()
	src, err := pull.Open(ctx, "oci:"+layout+":latest", nil, policy)
	if err != nil {
		return sysroottest.Image{}, err
	}
	defer src.Close()
	res, err := pull.ToComposefs(ctx, repo, src, pull.Options{})
	if err != nil {
		return sysroottest.Image{}, err
	}
	return sysroottest.Image{
		Ref:         ref,
		RawManifest: img.Manifest, RawConfig: img.Config,
		ImageVerity: hex.EncodeToString(res.ImageID),
	}, nil
}
