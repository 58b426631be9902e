package ostree

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/xattr"
)

// ErrNoObject is wrapped by FileObjectMeta for an object that is not in
// the repository.
var ErrNoObject = errors.New("no such object")

// FileObjectMeta returns the metadata a regular file object is stored
// with, as the repository mode records it: in bare mode the inode's owner,
// mode and xattrs; in bare-user mode the user.ostreemeta xattr; in
// bare-user-only mode the mode alone. The checksum names this metadata
// with the content, so a caller can check what it means to commit against
// it without reading the content.
func (r *Repo) FileObjectMeta(checksum string) (FileMeta, error) {
	meta, _, err := r.StoredFileObject(checksum)
	return meta, err
}

// StoredFileObject is FileObjectMeta that also returns the stored
// object's content size (st_size), from the same stat: a caller that
// checks both the metadata and the size (CheckFileObject) of an object
// it commits pays one lookup of the object instead of two.
func (r *Repo) StoredFileObject(checksum string) (FileMeta, int64, error) {
	if !ValidChecksum(checksum) {
		return FileMeta{}, 0, fmt.Errorf("invalid checksum %q", checksum)
	}
	rel := ObjectPath(checksum, ObjectFile)
	var st unix.Stat_t
	// Relative to the repository's descriptor: a walk of objects/XX/
	// only, not of the repository's whole path.
	if err := unix.Fstatat(r.dirFD, rel, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return FileMeta{}, 0, fmt.Errorf("%s: %w", filepath.Join(r.path, rel), ErrNoObject)
	} else if err != nil {
		return FileMeta{}, 0, fmt.Errorf("%s: %w", filepath.Join(r.path, rel), err)
	}
	meta, err := r.fileObjectMeta(filepath.Join(r.path, rel), &st)
	return meta, st.Size, err
}

// fileObjectMeta reads the metadata of the object at p, whose lstat is st.
func (r *Repo) fileObjectMeta(p string, st *unix.Stat_t) (FileMeta, error) {
	if st.Mode&sIFMT != sIFREG {
		return FileMeta{}, fmt.Errorf("%s: not a regular file object", p)
	}
	switch r.mode {
	case ModeBareUser:
		blob, err := xattr.Get(p, bareUserMetaXattr)
		if err != nil {
			return FileMeta{}, fmt.Errorf("%s: %s: %w", p, bareUserMetaXattr, err)
		}
		v, err := decodeGVariant(dirMetaType, blob)
		if err != nil {
			return FileMeta{}, fmt.Errorf("%s: %s: %w", p, bareUserMetaXattr, err)
		}
		f := v.([]any)
		mode := be32(f[2].(uint32))
		if mode&sIFMT != sIFREG {
			return FileMeta{}, fmt.Errorf("%s: %s records mode %#o, not a regular file", p, bareUserMetaXattr, mode)
		}
		xs, err := xattrsFromValue(f[3])
		if err != nil {
			return FileMeta{}, fmt.Errorf("%s: %s: %w", p, bareUserMetaXattr, err)
		}
		return FileMeta{UID: be32(f[0].(uint32)), GID: be32(f[1].(uint32)), Mode: mode & permMask, Xattrs: XattrMap(xs)}, nil
	case ModeBareUserOnly:
		return FileMeta{Mode: st.Mode & permMask}, nil
	}
	xattrs, err := xattr.List(p)
	if err != nil {
		return FileMeta{}, fmt.Errorf("%s: %w", p, err)
	}
	return FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode & permMask, Xattrs: xattrs}, nil
}

// SameFileMeta reports whether a and b name the same object header:
// ostree drops empty xattr values, so they do not count.
func SameFileMeta(a, b FileMeta) bool {
	if a.UID != b.UID || a.GID != b.GID || a.Mode != b.Mode {
		return false
	}
	xa, errA := canonicalXattrs(a.Xattrs)
	xb, errB := canonicalXattrs(b.Xattrs)
	if errA != nil || errB != nil || len(xa) != len(xb) {
		return false
	}
	for i := range xa {
		if xa[i].Name != xb[i].Name || !bytes.Equal(xa[i].Value, xb[i].Value) {
			return false
		}
	}
	return true
}

// String describes the metadata for messages.
func (m FileMeta) String() string {
	xs, _ := canonicalXattrs(m.Xattrs)
	names := make([]string, len(xs))
	for i, x := range xs {
		names[i] = x.Name
	}
	return fmt.Sprintf("mode %#o uid %d gid %d xattrs %v", m.Mode, m.UID, m.GID, names)
}
