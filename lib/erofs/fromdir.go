package erofs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/fsverity"
)

// DirOptions control FromDir.
type DirOptions struct {
	// Algorithm names the external objects (fsverity.SHA512 for
	// composefs-rs repositories, SHA256 for mkcomposefs compatibility).
	Algorithm fsverity.Algorithm
	// Object, if set, is called once per external file with its path and
	// digest, e.g. to store the bytes in an objects dir.
	Object func(path string, digest []byte) error
}

// FromDir builds the tree of a directory the way composefs-rs does: files
// of InlineThreshold bytes or less are inline, larger ones are external
// objects named by their fs-verity digest; hardlinks are detected by inode
// and the first name in dumpfile order is canonical. Symlinks are not
// followed.
func FromDir(dir string, opts DirOptions) (*Node, error) {
	b := &dirBuilder{opts: opts, seen: map[devIno]*Node{}}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	root, err := b.node(dir, "", &st)
	if err != nil {
		return nil, err
	}
	return root, b.children(dir, root)
}

type devIno struct{ dev, ino uint64 }

type dirBuilder struct {
	opts DirOptions
	seen map[devIno]*Node
}

func (b *dirBuilder) children(dir string, parent *Node) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(dir, name)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		key := devIno{uint64(st.Dev), st.Ino}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if first, ok := b.seen[key]; ok {
				if err := parent.AddChild(&Node{Name: name, LinkTo: first}); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				continue
			}
		}
		n, err := b.node(p, name, &st)
		if err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			b.seen[key] = n
		}
		if err := parent.AddChild(n); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if n.IsDir() {
			if err := b.children(p, n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *dirBuilder) node(p, name string, st *unix.Stat_t) (*Node, error) {
	n := &Node{
		Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid,
		MtimeSec: st.Mtim.Sec, MtimeNsec: uint32(st.Mtim.Nsec),
	}
	xs, err := readXattrs(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	n.Xattrs = xs
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Rdev = st.Rdev
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		n.Payload = target
		n.Size = uint64(len(target))
	case unix.S_IFREG:
		n.Size = uint64(st.Size)
		if st.Size == 0 {
			break
		}
		if st.Size <= InlineThreshold {
			data, err := readSmall(p, st.Size)
			if err != nil {
				return nil, err
			}
			n.Content = data
			break
		}
		digest, err := fsverity.DigestFile(p, b.opts.Algorithm)
		if err != nil {
			return nil, err
		}
		n.SetExternal(digest, uint64(st.Size))
		n.Mode = st.Mode
		if b.opts.Object != nil {
			if err := b.opts.Object(p, digest); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

func readSmall(p string, size int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return data, nil
}

// readXattrs lists a path's xattrs without following symlinks, sorted by
// name. A filesystem without xattr support has none.
func readXattrs(p string) ([]Xattr, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	var out []Xattr
	for _, name := range splitNul(buf[:size]) {
		v, err := lgetxattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		out = append(out, Xattr{Name: name, Value: v})
	}
	sortXattrs(out)
	return out, nil
}

func lgetxattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}
