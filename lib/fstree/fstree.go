// Package fstree is the merged filesystem tree of an image: directories
// holding named inodes, with hardlinks as one leaf shared by several
// names. Layers are applied onto it (lib/oci), and it is turned into an
// EROFS image (lib/erofs) and into the object list (lib/stream), both of
// which name a hardlinked leaf at its first occurrence in pre-order with
// byte-sorted names.
package fstree

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Stat is the metadata every inode has.
type Stat struct {
	Mode      uint32 // permission bits with setuid/setgid/sticky; the type is the inode's kind
	UID, GID  uint32
	Mtime     int64
	MtimeNsec uint32
	Xattrs    map[string][]byte
}

// Kind is the type of a leaf.
type Kind uint8

const (
	Regular Kind = iota + 1
	Symlink
	CharDev
	BlockDev
	Fifo
	Socket
)

func (k Kind) String() string {
	switch k {
	case Regular:
		return "file"
	case Symlink:
		return "symlink"
	case CharDev:
		return "chardev"
	case BlockDev:
		return "blockdev"
	case Fifo:
		return "fifo"
	case Socket:
		return "socket"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Leaf is any inode but a directory. Several directory entries may share
// one Leaf: that is a hardlink.
type Leaf struct {
	Stat
	Kind Kind
	// Regular files: Size, and either Inline (at most 64 bytes) or Object,
	// the fs-verity digest of the bytes in the object store.
	Size   int64
	Inline []byte
	Object []byte
	Target string // symlinks
	Rdev   uint64 // devices

	// names counts the times the leaf was put in a directory. Only a
	// leaf put there more than once can be a hardlink, and only such
	// leaves need to be remembered by a walk (which would otherwise hold
	// a path for every file of the tree).
	names int32
}

// placed counts one more name of in, if it is a leaf.
func placed(in Inode) {
	if l, ok := in.(*Leaf); ok {
		l.names++
	}
}

// maybeShared reports whether the leaf may have more than one name.
func (l *Leaf) maybeShared() bool { return l.names > 1 }

// Dir is a directory. Its entries are kept in a map; they are visited in
// byte order.
type Dir struct {
	Stat
	entries map[string]Inode
}

// Inode is *Dir or *Leaf.
type Inode interface{ stat() *Stat }

func (d *Dir) stat() *Stat  { return &d.Stat }
func (l *Leaf) stat() *Stat { return &l.Stat }

// NewDir returns an empty directory.
func NewDir(st Stat) *Dir { return &Dir{Stat: st, entries: make(map[string]Inode)} }

// Get returns the entry called name, or nil.
func (d *Dir) Get(name string) Inode { return d.entries[name] }

// Set adds or replaces an entry.
func (d *Dir) Set(name string, in Inode) {
	placed(in)
	d.entries[name] = in
}

// Remove deletes an entry if present.
func (d *Dir) Remove(name string) { delete(d.entries, name) }

// Clear deletes every entry.
func (d *Dir) Clear() { clear(d.entries) }

// Len is the number of entries.
func (d *Dir) Len() int { return len(d.entries) }

// Names returns the entry names in byte order.
func (d *Dir) Names() []string {
	names := make([]string, 0, len(d.entries))
	for n := range d.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Merge puts in under name with overlayfs semantics: a directory over a
// directory takes the new metadata and keeps the children; anything else
// replaces the entry whole.
func (d *Dir) Merge(name string, in Inode) {
	if newDir, ok := in.(*Dir); ok {
		if old, ok := d.entries[name].(*Dir); ok {
			old.Stat = newDir.Stat
			for n, c := range newDir.entries {
				old.entries[n] = c
			}
			return
		}
	}
	placed(in)
	d.entries[name] = in
}

// ErrNotFound is wrapped by lookups of a path that does not exist.
var ErrNotFound = errors.New("no such file or directory")

// Split walks to the directory holding p ("/a/b/c" → dir /a/b, "c").
// Every component on the way must be a directory.
func (d *Dir) Split(p string) (*Dir, string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil, "", errors.New("the root has no parent")
	}
	parts := strings.Split(p, "/")
	cur := d
	for i, name := range parts[:len(parts)-1] {
		next, ok := cur.entries[name]
		if !ok {
			return nil, "", fmt.Errorf("/%s: %w", strings.Join(parts[:i+1], "/"), ErrNotFound)
		}
		dir, ok := next.(*Dir)
		if !ok {
			return nil, "", fmt.Errorf("/%s is not a directory", strings.Join(parts[:i+1], "/"))
		}
		cur = dir
	}
	return cur, parts[len(parts)-1], nil
}

// Lookup returns the inode at p.
func (d *Dir) Lookup(p string) (Inode, error) {
	if strings.Trim(p, "/") == "" {
		return d, nil
	}
	dir, name, err := d.Split(p)
	if err != nil {
		return nil, err
	}
	in := dir.entries[name]
	if in == nil {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	return in, nil
}

// Walk visits d's descendants in pre-order with byte-sorted names. fn
// gets the absolute path, the inode, and for a leaf seen before (another
// name of a hardlinked leaf) the path of its first occurrence.
func (d *Dir) Walk(fn func(path string, in Inode, firstPath string) error) error {
	seen := make(map[*Leaf]string)
	var walk func(prefix string, dir *Dir) error
	walk = func(prefix string, dir *Dir) error {
		for _, name := range dir.Names() {
			p := prefix + "/" + name
			switch in := dir.entries[name].(type) {
			case *Dir:
				if err := fn(p, in, ""); err != nil {
					return err
				}
				if err := walk(p, in); err != nil {
					return err
				}
			case *Leaf:
				var first string
				if in.maybeShared() {
					var dup bool
					if first, dup = seen[in]; !dup {
						seen[in] = p
					}
				}
				if err := fn(p, in, first); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk("", d)
}
