package nativehost

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/xattr"
)

// ErrEtcConflict is wrapped by the merge when a local change cannot be
// carried over: a path is a directory on one side and not on the other
// (bootc's "Merge conflicts found in etc").
var ErrEtcConflict = errors.New("merge conflicts found in etc")

// mergeEtc is the three-way /etc merge of an upgrade: what changed from
// pristine (the booted image's /etc, pnode, nil if it has none) to cur
// (the running /etc) is applied to next (the new deployment's copy of
// the new image's /etc). Files added or modified locally replace the new
// image's; files removed locally are removed; everything untouched keeps
// the new image's version. Content, owner, mode, xattrs and symlink
// targets count as changes; mtimes do not.
func mergeEtc(t *imageTree, pnode *erofs.Node, cur, next string) error {
	if pnode != nil && !pnode.IsDir() {
		pnode = nil
	}
	// Conflicts are found before anything is written, as bootc's
	// get_etc_diff does, so a refused merge leaves next untouched.
	if err := mergeDir(t, pnode, cur, next, "/etc", true); err != nil {
		return err
	}
	return mergeDir(t, pnode, cur, next, "/etc", false)
}

// mergeDir merges one directory; dry only looks for conflicts.
func mergeDir(t *imageTree, pdir *erofs.Node, cdir, ndir, rel string, dry bool) error {
	ents, err := os.ReadDir(cdir)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, de := range ents {
		name := de.Name()
		seen[name] = true
		var pc *erofs.Node
		if pdir != nil {
			pc = pdir.Lookup(name)
		}
		cpath, npath, r := filepath.Join(cdir, name), filepath.Join(ndir, name), rel+"/"+name
		if pc != nil {
			same, err := sameTree(t, pc, cpath)
			if err != nil {
				return err
			}
			if same {
				continue
			}
		}
		cst, err := lstat(cpath)
		if err != nil {
			return err
		}
		nst, nerr := lstat(npath)
		nExists := nerr == nil
		if nerr != nil && !errors.Is(nerr, os.ErrNotExist) {
			return nerr
		}
		if cst.Mode&unix.S_IFMT == unix.S_IFDIR {
			var pcDir *erofs.Node
			if pc != nil && pc.Inode().Mode&erofs.TypeMask == erofs.TypeDir {
				pcDir = pc
			}
			switch {
			case nExists && nst.Mode&unix.S_IFMT != unix.S_IFDIR:
				return fmt.Errorf("%w: %s is a directory in the running /etc, not in the new image", ErrEtcConflict, r)
			case dry:
			case !nExists:
				if err := os.Mkdir(npath, 0o700); err != nil {
					return err
				}
				if err := copyDirMeta(cpath, npath, cst); err != nil {
					return err
				}
			default:
				if pcDir == nil || !sameMeta(pcDir, cpath, cst) {
					if err := copyDirMeta(cpath, npath, cst); err != nil {
						return err
					}
				}
			}
			if dry && !nExists {
				continue // nothing below can conflict with what is not there
			}
			if err := mergeDir(t, pcDir, cpath, npath, r, dry); err != nil {
				return err
			}
			if nExists && !dry {
				// Children changed its mtime; keep the directory's own.
				if err := setMtime(npath, cst); err != nil {
					return err
				}
			}
			continue
		}
		if nExists && nst.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Errorf("%w: %s is a directory in the new image, not in the running /etc", ErrEtcConflict, r)
		}
		if dry {
			continue
		}
		if nExists {
			if err := os.Remove(npath); err != nil {
				return err
			}
		}
		if err := copyNode(cpath, npath, cst); err != nil {
			return fmt.Errorf("%s: %w", r, err)
		}
	}
	if pdir == nil || dry {
		return nil
	}
	for _, pc := range pdir.Children {
		if seen[pc.Name] {
			continue
		}
		// Removed locally: removed in the new deployment too.
		if err := os.RemoveAll(filepath.Join(ndir, pc.Name)); err != nil {
			return err
		}
	}
	return nil
}

func lstat(p string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}

// sameTree: is the file (or directory, recursively) at cpath what the
// pristine image has at pc?
func sameTree(t *imageTree, pc *erofs.Node, cpath string) (bool, error) {
	st, err := lstat(cpath)
	if err != nil {
		return false, err
	}
	in := pc.Inode()
	if uint32(st.Mode)&unix.S_IFMT != in.Mode&erofs.TypeMask || !sameMeta(in, cpath, st) {
		return false, nil
	}
	switch in.Mode & erofs.TypeMask {
	case erofs.TypeDir:
		ents, err := os.ReadDir(cpath)
		if err != nil {
			return false, err
		}
		if len(ents) != len(in.Children) {
			return false, nil
		}
		for _, de := range ents {
			c := in.Lookup(de.Name())
			if c == nil {
				return false, nil
			}
			same, err := sameTree(t, c, filepath.Join(cpath, de.Name()))
			if err != nil || !same {
				return false, err
			}
		}
		return true, nil
	case erofs.TypeRegular:
		if uint64(st.Size) != in.Size {
			return false, nil
		}
		return sameContent(t, in, cpath)
	case erofs.TypeSymlink:
		target, err := os.Readlink(cpath)
		return err == nil && target == in.Payload, err
	case erofs.TypeChar, erofs.TypeBlock:
		return uint64(st.Rdev) == in.Rdev, nil
	}
	return true, nil
}

func sameContent(t *imageTree, in *erofs.Node, cpath string) (bool, error) {
	f, err := os.Open(cpath)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if in.Digest == nil {
		data, err := io.ReadAll(io.LimitReader(f, int64(len(in.Content))+1))
		return err == nil && bytes.Equal(data, in.Content), err
	}
	obj, err := t.repo.OpenObject(in.Digest)
	if err != nil {
		return false, fmt.Errorf("pristine %s: %w", in.Path(), err)
	}
	defer obj.Close()
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(f, a)
		nb, eb := io.ReadFull(obj, b)
		if na != nb || !bytes.Equal(a[:na], b[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, nil
		}
	}
}

// sameMeta compares owner, permission bits and xattrs.
func sameMeta(in *erofs.Node, p string, st *unix.Stat_t) bool {
	if st.Uid != in.UID || st.Gid != in.GID {
		return false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&0o7777 != in.Mode&0o7777 {
		return false
	}
	xs, err := xattr.List(p)
	if err != nil || len(xs) != len(in.Xattrs) {
		return false
	}
	for _, x := range in.Xattrs {
		if v, ok := xs[x.Name]; !ok || !bytes.Equal(v, x.Value) {
			return false
		}
	}
	return true
}

// copyNode copies one non-directory from the running /etc.
func copyNode(src, dst string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if _, err := reflink.Clone(dst, src, reflink.Auto); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("unknown file type %o", st.Mode&unix.S_IFMT)
	}
	return copyMeta(src, dst, st)
}

func copyDirMeta(src, dst string, st *unix.Stat_t) error {
	// Xattrs the new image set on the directory and the running one lacks
	// go, so that the result is the running directory's.
	old, err := xattr.List(dst)
	if err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	cur, err := xattr.List(src)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			if err := unix.Lremovexattr(dst, name); err != nil {
				return fmt.Errorf("%s: remove xattr %s: %w", dst, name, err)
			}
		}
	}
	return copyMeta(src, dst, st)
}

func copyMeta(src, dst string, st *unix.Stat_t) error {
	xs, err := xattr.List(src)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	list := make([]erofs.Xattr, 0, len(xs))
	for k, v := range xs {
		list = append(list, erofs.Xattr{Name: k, Value: v})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return applyMeta(dst, st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec, uint32(st.Mtim.Nsec), list)
}

func setMtime(p string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Mtim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}
