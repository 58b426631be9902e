package erofs

import (
	"fmt"
	"io"
	"slices"
)

// Builder makes an image one entry at a time, for a caller that already
// holds the tree in a model of its own (a merged layer tree): each entry
// becomes the writer's inode as it is added, so no Node tree of the whole
// image exists beside the caller's tree and the inodes. For 100k entries
// that tree would be about a quarter of the writer's peak memory. The
// image is the one Write makes of the same tree.
type Builder struct {
	b       builder
	root    *inode
	version int
	count   int // inodes added, for layout
}

// Entry is an inode added to a Builder: a directory to add entries to, or
// a leaf to link to again. It is the writer's inode itself, so adding an
// entry allocates nothing more.
type Entry inode

func (e *Entry) inode() *inode { return (*inode)(e) }

// NewBuilder starts an image. The version must be decided up front:
// opts.MaxVersion may not exceed opts.Version (mkcomposefs's choice
// between them looks at the whole tree).
func NewBuilder(opts Options) (*Builder, error) {
	if opts.Version < 0 || opts.Version > 1 || opts.MaxVersion > 1 {
		return nil, fmt.Errorf("erofs: unsupported composefs version %d (max %d)", opts.Version, opts.MaxVersion)
	}
	if opts.MaxVersion > opts.Version {
		return nil, fmt.Errorf("erofs: a Builder needs one version, not %d to %d", opts.Version, opts.MaxVersion)
	}
	return &Builder{b: builder{version: opts.Version}, version: opts.Version}, nil
}

// Root sets the root directory from n (its metadata only; children are
// added with Add).
func (b *Builder) Root(n *Node) (*Entry, error) {
	if b.root != nil {
		return nil, fmt.Errorf("erofs: the root is set twice")
	}
	if !n.IsDir() {
		return nil, fmt.Errorf("erofs: root must be a directory")
	}
	in, err := b.b.convertNode(n, nil, where{full: "/"}, nil)
	if err != nil {
		return nil, err
	}
	b.root = in
	b.count = 1
	return (*Entry)(in), nil
}

// Add puts the inode of n under the directory dir with n's name. n's
// Children and LinkTo are not looked at (use Add and Link), and n itself
// is not kept: the inode shares n's content, payload, xattr names and
// values, which must not change afterwards.
func (b *Builder) Add(dir *Entry, n *Node) (*Entry, error) {
	return b.add(dir, n, nil)
}

// AddExternal is Add of n made an external file by
// n.SetExternalShared(digest, n.Size), without the payload string that
// makes: the image has the object path only in the overlay redirect
// xattr, made from digest when it is written. digest is kept without a
// copy and must not change afterwards.
func (b *Builder) AddExternal(dir *Entry, n *Node, digest []byte) (*Entry, error) {
	if l := len(digest); l != 32 && l != 64 {
		c := *n
		c.SetExternalShared(digest, n.Size)
		return b.add(dir, &c, nil)
	}
	return b.add(dir, n, digest)
}

func (b *Builder) add(dir *Entry, n *Node, obj []byte) (*Entry, error) {
	if dir == nil || dir.inode().typ() != TypeDir {
		return nil, fmt.Errorf("erofs: %s: not added to a directory", n.Name)
	}
	d := dir.inode()
	if err := ValidName(n.Name); err != nil {
		return nil, fmt.Errorf("erofs: %s: %w", where{dir: d, name: n.Name}, err)
	}
	in, err := b.b.convertNode(n, d, where{dir: d, name: n.Name}, obj)
	if err != nil {
		return nil, err
	}
	d.dirents = append(d.dirents, dirent{n.Name, in, false})
	b.count++
	if in.typ() != TypeDir {
		if n.Nlink != 0 {
			in.nlink, in.fixed = n.Nlink, true
		} else {
			in.nlink = 1
		}
	}
	return (*Entry)(in), nil
}

// Grow makes room in the directory e for n more entries, for a caller
// that knows how many it will add: the entries are then kept in one
// allocation of the right size instead of one grown by doubling (about
// 9 MB of garbage for a tree of 100k entries, and up to twice the
// memory kept).
func (e *Entry) Grow(n int) {
	in := e.inode()
	if in.typ() == TypeDir && n > 0 {
		in.dirents = slices.Grow(in.dirents, n)
	}
}

// Link gives target, a leaf added before, the further name name in dir: a
// hardlink.
func (b *Builder) Link(dir *Entry, name string, target *Entry) error {
	if dir == nil || dir.inode().typ() != TypeDir {
		return fmt.Errorf("erofs: %s: not linked in a directory", name)
	}
	d, t := dir.inode(), target.inode()
	if err := ValidName(name); err != nil {
		return fmt.Errorf("erofs: %s: %w", where{dir: d, name: name}, err)
	}
	if t.typ() == TypeDir {
		return fmt.Errorf("erofs: %s: hardlink to a directory", where{dir: d, name: name})
	}
	if !t.fixed {
		t.nlink++
	}
	d.dirents = append(d.dirents, dirent{name: name, target: t, link: true})
	return nil
}

// SetDigest gives e, an external regular file added with a size but
// without a digest (its Node had neither Content nor Digest), its
// fs-verity digest, kept without a copy: the image is then the one Write
// makes of a node that had that digest and its object path as payload
// (SetExternal). It lets a caller add a file as soon as it is listed and
// hash it on another goroutine. SetDigest may run concurrently with Add
// and Link of other entries; all calls must have returned before Write.
func (e *Entry) SetDigest(digest []byte) error {
	in := e.inode()
	if !in.external || in.data != nil || in.virt != 0 {
		return fmt.Errorf("erofs: SetDigest on an entry that is not an external file without a digest")
	}
	if l := len(digest); l != 32 && l != 64 {
		return fmt.Errorf("erofs: digest of %d bytes is neither SHA-256 nor SHA-512", len(digest))
	}
	in.data = digest
	in.virt = virtMetacopy | virtRedirect
	// Add set the metacopy xattr of a file without a digest; its
	// placeholder replaces it, and the redirect follows (layout sorts
	// xattrs by name).
	if in.staticX {
		in.xattrs = xattrsVirtual
		return nil
	}
	in.setXattr(xattrMetacopy, nil)
	in.setXattr(xattrRedirect, nil)
	return nil
}

// Write writes the image to w. The Builder cannot be used after.
func (b *Builder) Write(w io.Writer) error {
	if b.root == nil {
		return fmt.Errorf("erofs: no root")
	}
	r := b.root
	b.root = nil
	r.setXattr(xattrOpaque, []byte("y"))
	addStubs(r)
	if err := finishDirs(r); err != nil {
		return err
	}
	return emitImage(w, r, b.version, b.count+256)
}

func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}
