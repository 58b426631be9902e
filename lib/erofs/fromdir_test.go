package erofs_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// TestWriteDirErrors: what cannot be walked is named in a one-line error,
// and a walk stopped by a failing file leaves no descriptor open.
func TestWriteDirErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	sha := erofs.DirOptions{Algorithm: fsverity.SHA256}
	for _, src := range []string{file, filepath.Join(dir, "link"), filepath.Join(dir, "missing")} {
		err := erofs.WriteDir(io.Discard, src, sha, erofs.V1)
		if err == nil || !strings.HasPrefix(err.Error(), src+": ") {
			t.Errorf("WriteDir(%s) = %v, want an error naming it", src, err)
		}
	}
	if err := erofs.WriteDir(io.Discard, dir, erofs.DirOptions{}, erofs.V1); err == nil {
		t.Error("WriteDir without an algorithm succeeded")
	}

	tree := filepath.Join(dir, "tree")
	big := make([]byte, 5000)
	for _, d := range []string{"a", "b", "c"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			big[0] = byte(i)
			if err := os.WriteFile(filepath.Join(tree, d, strings.Repeat("f", i+1)), big, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := testfs.OpenFDs(t)
	failing := filepath.Join(tree, "b", "fff")
	opts := erofs.DirOptions{Algorithm: fsverity.SHA256, Object: func(p string, _ []byte) error {
		if p == failing {
			return errors.New("object store full")
		}
		return nil
	}}
	err := erofs.WriteDir(io.Discard, tree, opts, erofs.V1)
	if err == nil || err.Error() != "object store full" {
		t.Errorf("WriteDir with a failing object store: %v", err)
	}
	if after := testfs.OpenFDs(t); after != before {
		t.Errorf("%d descriptors open after the failed walk, %d before", after, before)
	}
}
