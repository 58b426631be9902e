package erofs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/reflink"
)

// StoreObject puts the bytes of src into objectsDir under the composefs
// object name of digest (XX/rest), sharing extents with src when the
// filesystem can. An existing object is kept: objects are named by their
// content, so it already holds the same bytes.
func StoreObject(objectsDir, src string, digest []byte) error {
	dst := filepath.Join(objectsDir, ObjectPath(digest))
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("objects dir: %w", err)
	}
	if _, err := reflink.Clone(dst, src, reflink.Auto); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // a concurrent writer stored it first
		}
		return err
	}
	return nil
}
