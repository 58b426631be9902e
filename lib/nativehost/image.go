package nativehost

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/reflink"
)

// maxImageSize bounds what is read of an EROFS image into memory: the
// metadata of a large OS image is tens of MiB.
const maxImageSize = 1 << 30

// imageTree is an EROFS image of the repository, parsed: its /etc and
// /var are copied out of it and its kernel found in it without mounting
// anything, so a deployment can be written where mounts are not allowed
// (a build container, a test) and a killed writer leaves no mount behind.
type imageTree struct {
	repo *composefs.Repository
	id   string
	root *erofs.Node
}

func openImageTree(repo *composefs.Repository, id []byte) (*imageTree, error) {
	hexID := hex.EncodeToString(id)
	p := filepath.Join(repo.Path(), "images", hexID)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", hexID, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImageSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(data) > maxImageSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, maxImageSize)
	}
	img, err := erofs.Read(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &imageTree{repo: repo, id: hexID, root: img.Root}, nil
}

// lookup finds an absolute path in the image, following symlinks (inside
// the image: an absolute target is relative to the image root). nil, nil
// when it does not exist.
func (t *imageTree) lookup(p string) (*erofs.Node, error) {
	return t.resolve(t.root, strings.TrimPrefix(path.Clean("/"+p), "/"), 0, true)
}

// lookupNoFollow is lookup without following a final symlink.
func (t *imageTree) lookupNoFollow(p string) (*erofs.Node, error) {
	return t.resolve(t.root, strings.TrimPrefix(path.Clean("/"+p), "/"), 0, false)
}

func (t *imageTree) resolve(dir *erofs.Node, rel string, depth int, followLast bool) (*erofs.Node, error) {
	if depth > 40 {
		return nil, fmt.Errorf("image %s: too many levels of symlinks", t.id)
	}
	cur := dir
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			if cur.Parent() != nil {
				cur = cur.Parent()
			}
			continue
		}
		if !cur.IsDir() {
			return nil, nil
		}
		next := cur.Lookup(name)
		if next == nil {
			return nil, nil
		}
		in := next.Inode()
		if in.Mode&erofs.TypeMask == erofs.TypeSymlink && (i < len(parts)-1 || followLast) {
			target := in.Payload
			base := cur
			if strings.HasPrefix(target, "/") {
				base = t.root
			}
			rest := strings.Join(append([]string{target}, parts[i+1:]...), "/")
			return t.resolve(base, strings.TrimPrefix(rest, "/"), depth+1, followLast)
		}
		cur = next
	}
	return cur, nil
}

// readFile returns the bytes of a regular file of the image, at most max.
func (t *imageTree) readFile(n *erofs.Node, max int64) ([]byte, error) {
	in := n.Inode()
	if in.Mode&erofs.TypeMask != erofs.TypeRegular {
		return nil, fmt.Errorf("image %s: %s is not a regular file", t.id, n.Path())
	}
	if int64(in.Size) > max {
		return nil, fmt.Errorf("image %s: %s is larger than %d bytes", t.id, n.Path(), max)
	}
	if in.Digest == nil {
		return append([]byte(nil), in.Content...), nil
	}
	f, err := t.repo.OpenObject(in.Digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %s: %w", t.id, n.Path(), err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("image %s: %s: %w", t.id, n.Path(), err)
	}
	if uint64(len(data)) != in.Size {
		return nil, fmt.Errorf("image %s: %s: object %x holds %d bytes, the image says %d", t.id, n.Path(), in.Digest, len(data), in.Size)
	}
	return data, nil
}

// objectPath is where an external file's bytes are.
func (t *imageTree) objectPath(n *erofs.Node) string {
	return filepath.Join(t.repo.Path(), "objects", erofs.ObjectPath(n.Inode().Digest))
}

// extract copies the subtree at dir (a directory of the image) to dst,
// which must not exist, as "cp -a" from a mount of the image would: owner,
// mode, xattrs, mtime, hardlinks within the subtree, device nodes. File
// bytes are reflinked from the repository's objects where the filesystem
// allows, copied else. Nothing is synced: the caller syncs the filesystem
// once (syncfs) before naming the result.
func (t *imageTree) extract(dir *erofs.Node, dst string) error {
	links := map[*erofs.Node]string{}
	return t.extractNode(dir, dst, links)
}

func (t *imageTree) extractNode(n *erofs.Node, dst string, links map[*erofs.Node]string) error {
	in := n.Inode()
	typ := in.Mode & erofs.TypeMask
	if typ != erofs.TypeDir {
		if first, ok := links[in]; ok {
			if err := os.Link(first, dst); err != nil {
				return err
			}
			return nil
		}
		links[in] = dst
	}
	perm := in.Mode & 0o7777
	switch typ {
	case erofs.TypeDir:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		for _, c := range in.Children {
			if err := t.extractNode(c, filepath.Join(dst, c.Name), links); err != nil {
				return err
			}
		}
	case erofs.TypeRegular:
		if in.Digest != nil {
			if _, err := reflink.Clone(dst, t.objectPath(in), reflink.Auto); err != nil {
				return fmt.Errorf("image %s: %s: %w", t.id, n.Path(), err)
			}
			if fi, err := os.Stat(dst); err != nil {
				return err
			} else if uint64(fi.Size()) != in.Size {
				return fmt.Errorf("image %s: %s: object %x holds %d bytes, the image says %d", t.id, n.Path(), in.Digest, fi.Size(), in.Size)
			}
		} else if err := os.WriteFile(dst, in.Content, 0o600); err != nil {
			return err
		}
	case erofs.TypeSymlink:
		if err := os.Symlink(in.Payload, dst); err != nil {
			return err
		}
	case erofs.TypeChar, erofs.TypeBlock, erofs.TypeFifo, erofs.TypeSocket:
		if err := unix.Mknod(dst, in.Mode, int(in.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("image %s: %s: unknown file type %o", t.id, n.Path(), typ)
	}
	return applyMeta(dst, typ, perm, in.UID, in.GID, in.MtimeSec, in.MtimeNsec, in.Xattrs)
}

// applyMeta sets what cp -a preserves, in the order that keeps it: owner
// first (chown clears setuid bits), then mode, xattrs, and mtime last.
func applyMeta(p string, typ, perm, uid, gid uint32, sec int64, nsec uint32, xattrs []erofs.Xattr) error {
	if err := os.Lchown(p, int(uid), int(gid)); err != nil {
		return err
	}
	if typ != erofs.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, perm, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	sorted := append([]erofs.Xattr(nil), xattrs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, x := range sorted {
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("%s: xattr %s: %w", p, x.Name, err)
		}
	}
	ts := []unix.Timespec{{Sec: sec, Nsec: int64(nsec)}, {Sec: sec, Nsec: int64(nsec)}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}

// ResolveImage is the Image of a stored image for a native deployment:
// its boot image (composefs.image.boot.v1, which cfs-pull writes for a
// bootable image) is what the kernel command line names and whose /etc
// the deployment copies; the image as pulled (composefs.image.v1) is where
// the kernel or UKI comes from, since the boot image's /boot is empty.
func ResolveImage(repo *composefs.Repository, manifestDigest, imageRef string) (Image, error) {
	st, err := oci.OpenImage(repo, manifestDigest)
	if err != nil {
		return Image{}, err
	}
	if st.ImageID == nil {
		return Image{}, fmt.Errorf("image %s in %s names no EROFS image (%s)", manifestDigest, repo.Path(), oci.RefImageV1)
	}
	if st.BootImageID == nil {
		return Image{}, fmt.Errorf("image %s in %s has no boot image (%s): it is not bootable (no kernel, or no /boot and /sysroot), or an older cfs-pull stored it; pull it again",
			manifestDigest, repo.Path(), oci.RefBootImageV1)
	}
	return Image{Repo: repo, ManifestDigest: manifestDigest, ID: st.BootImageID, Source: st.ImageID, ImageRef: imageRef}, nil
}
