package composefs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/reflink"
)

// ObjectName is the path of an object below objects/: "XX/rest".
func ObjectName(id []byte) string {
	h := hex.EncodeToString(id)
	return h[:2] + "/" + h[2:]
}

// ObjectPath is the absolute path of the object id.
func (r *Repository) ObjectPath(id []byte) string {
	return filepath.Join(r.path, "objects", ObjectName(id))
}

// HasObject reports whether the object exists.
func (r *Repository) HasObject(id []byte) bool {
	_, err := os.Lstat(r.ObjectPath(id))
	return err == nil
}

// OpenObject opens an object for reading.
func (r *Repository) OpenObject(id []byte) (*os.File, error) {
	return os.Open(r.ObjectPath(id))
}

// enableVerity turns on fs-verity where the filesystem supports it and,
// when it did, checks the kernel's digest against want. It reports whether
// verity is now on. A repository in secure mode (required) refuses
// objects the kernel cannot protect.
func enableVerity(f *os.File, alg fsverity.Algorithm, want []byte, required bool) (bool, error) {
	err := fsverity.Enable(f, alg)
	if errors.Is(err, fsverity.ErrUnavailable) {
		if required {
			return false, fmt.Errorf("%s: the repository requires fs-verity, which this filesystem does not support: %w", f.Name(), err)
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if want == nil {
		return true, nil
	}
	_, got, err := fsverity.Measure(f)
	if err != nil {
		return true, err
	}
	if !bytes.Equal(got, want) {
		return true, fmt.Errorf("%s: kernel fs-verity digest %x differs from the computed %x", f.Name(), got, want)
	}
	return true, nil
}

// finishObject names a complete temporary file by its digest. An object
// that already exists is left as it is and reported as not created.
func (r *Repository) finishObject(t *tmpFile, id []byte) (created bool, err error) {
	defer t.discard()
	if err := t.reopenReadOnly(); err != nil {
		return false, err
	}
	if _, err := enableVerity(t.File, r.alg, id, r.secure); err != nil {
		return false, err
	}
	dst := r.ObjectPath(id)
	if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return false, err
	}
	if err := t.link(dst); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// EnsureObject stores data as an object and returns its id.
func (r *Repository) EnsureObject(data []byte) ([]byte, error) {
	id, err := fsverity.Digest(bytes.NewReader(data), r.alg)
	if err != nil {
		return nil, err
	}
	if r.HasObject(id) {
		return id, nil
	}
	_, _, _, err = r.WriteObject(bytes.NewReader(data))
	return id, err
}

// WriteObject stores everything src yields as an object, hashing the
// bytes as they are written. It reports the id, the size, and whether the
// object is new.
func (r *Repository) WriteObject(src io.Reader) (id []byte, size int64, created bool, err error) {
	if err := r.checkWritable(); err != nil {
		return nil, 0, false, err
	}
	t, err := createTemp(filepath.Join(r.path, "objects"))
	if err != nil {
		return nil, 0, false, err
	}
	h := fsverity.New(r.alg)
	// MultiWriter keeps io.Copy from using copy_file_range, which would
	// skip the hasher.
	size, err = io.Copy(io.MultiWriter(t.File, h), src)
	if err != nil {
		t.discard()
		return nil, size, false, err
	}
	id = h.Sum(nil)
	created, err = r.finishObject(t, id)
	if err != nil {
		return nil, size, false, fmt.Errorf("storing object %x: %w", id, err)
	}
	return id, size, created, nil
}

// ImportFile stores the content of the file at src as an object, sharing
// its extents by FICLONE under the given policy. The digest is computed
// over the bytes that landed in the repository, never trusted from the
// caller.
func (r *Repository) ImportFile(src string, policy reflink.Policy) (id []byte, size int64, how reflink.Result, created bool, err error) {
	if err := r.checkWritable(); err != nil {
		return nil, 0, 0, false, err
	}
	in, err := os.Open(src)
	if err != nil {
		return nil, 0, 0, false, err
	}
	defer in.Close()
	t, err := createTemp(filepath.Join(r.path, "objects"))
	if err != nil {
		return nil, 0, 0, false, err
	}
	how, err = reflink.CloneFile(t.File, in, policy)
	if err != nil {
		t.discard()
		return nil, 0, 0, false, err
	}
	if _, err := t.Seek(0, io.SeekStart); err != nil {
		t.discard()
		return nil, 0, how, false, err
	}
	h := fsverity.New(r.alg)
	size, err = io.Copy(h, t.File)
	if err != nil {
		t.discard()
		return nil, size, how, false, err
	}
	id = h.Sum(nil)
	created, err = r.finishObject(t, id)
	if err != nil {
		return nil, size, how, false, fmt.Errorf("storing object %x from %s: %w", id, src, err)
	}
	return id, size, how, created, nil
}
