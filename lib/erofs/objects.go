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
// filesystem can, and durable before it has its name (as mkcomposefs's
// digest store fsyncs each object). An existing object of src's size is
// kept, since objects are named by their content; one of another size is
// what a crash or a damaged store left, and is replaced.
func StoreObject(objectsDir, src string, digest []byte) error {
	dst := filepath.Join(objectsDir, ObjectPath(digest))
	if fi, err := os.Lstat(dst); err == nil {
		sfi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("object source: %w", err)
		}
		if fi.Mode().IsRegular() && fi.Size() == sfi.Size() {
			return nil
		}
		if err := os.Remove(dst); err != nil {
			return fmt.Errorf("replace damaged object %s: %w", dst, err)
		}
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
