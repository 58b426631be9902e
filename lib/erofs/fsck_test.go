package erofs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/erofs"
)

func fsck(t *testing.T, fsckPath string, img []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.cfs")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(fsckPath, p).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.erofs rejects the image: %v\n%s", err, out)
	}
}

// TestFsckErofs: erofs-utils accepts every image the tests write.
func TestFsckErofs(t *testing.T) {
	fsckPath := testfs.RequireTool(t, "fsck.erofs")
	t.Run("empty", func(t *testing.T) { fsck(t, fsckPath, buildImage(t, erofs.NewDir("", 0o755), erofs.V1)) })
	t.Run("simple", func(t *testing.T) {
		fsck(t, fsckPath, buildImage(t, simpleTree(make([]byte, 64)), erofs.V1))
	})
	t.Run("generated", func(t *testing.T) { fsck(t, fsckPath, buildImage(t, genTree(t, 1, 3000), erofs.V1)) })
	for _, a := range assets(t) {
		t.Run(a.name, func(t *testing.T) {
			fsck(t, fsckPath, buildImage(t, parseDump(t, readAsset(t, a.path), a.name), assetOptions(t, a.path)))
		})
	}
}
