package erofs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/fsverity"
)

// WriteFile writes the image of root to path atomically (a temporary file
// renamed into place, removed on any failure) and returns the image's
// fs-verity digest, the id composefs and bootc know it by.
func WriteFile(path string, root *Node, opts Options, alg fsverity.Algorithm) ([]byte, error) {
	return WriteFileWith(path, alg, func(w io.Writer) error { return Write(w, root, opts) })
}

// WriteFileWith is WriteFile of the image write writes (WriteDir, a
// Builder's Write).
func WriteFileWith(path string, alg fsverity.Algorithm, write func(io.Writer) error) ([]byte, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := fsverity.New(alg)
	if err := write(io.MultiWriter(tmp, h)); err != nil {
		return nil, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	ok = true
	return h.Sum(nil), nil
}
