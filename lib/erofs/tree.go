package erofs

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unsafe"
)

// File type bits of Mode, as in st_mode.
const (
	TypeMask    = 0o170000
	TypeSocket  = 0o140000
	TypeSymlink = 0o120000
	TypeRegular = 0o100000
	TypeBlock   = 0o060000
	TypeDir     = 0o040000
	TypeChar    = 0o020000
	TypeFifo    = 0o010000
)

// Xattr is one extended attribute. Names are full ("user.foo").
type Xattr struct {
	Name  string
	Value []byte
}

// Node is one directory entry of the tree. A hardlink is a Node whose LinkTo
// is set: it only has a Name, and the inode is the LinkTo node's. The node
// that is not a link is the canonical name; its position in the tree decides
// where the inode is laid out, which is why the model keeps the distinction.
type Node struct {
	Name string
	// Mode is the full st_mode, type bits included.
	Mode      uint32
	UID, GID  uint32
	MtimeSec  int64
	MtimeNsec uint32
	// Nlink of a non-directory; 0 means "count the names" (composefs-rs).
	// mkcomposefs takes it verbatim from the dumpfile, so we keep it.
	Nlink uint32
	Rdev  uint64
	// Size is the file size. For a symlink it is ignored (len(Target)).
	Size uint64
	// Content holds the bytes of an inline regular file (nil = external or
	// empty).
	Content []byte
	// Payload is the symlink target, or for an external regular file the
	// object path inside the objects dir ("XX/rest").
	Payload string
	// Digest is the fs-verity digest of an external file's object: 32 bytes
	// (SHA-256) or 64 bytes (SHA-512). nil = unknown.
	Digest []byte
	Xattrs []Xattr

	// Children of a directory, kept sorted by name (bytewise).
	Children []*Node
	LinkTo   *Node

	parent *Node
	// redirect backs Payload when SetExternalShared made it (see there).
	redirect []byte
}

// Type returns the file type bits of the node's inode.
func (n *Node) Type() uint32 { return n.Inode().Mode & TypeMask }

// IsDir reports whether n (not following links) is a directory.
func (n *Node) IsDir() bool { return n.LinkTo == nil && n.Mode&TypeMask == TypeDir }

// Parent returns the directory n was added to (nil for the root).
func (n *Node) Parent() *Node { return n.parent }

// Inode follows hardlinks to the node that carries the inode. A cycle
// (only possible in a hand-built tree) stops at the starting node.
func (n *Node) Inode() *Node {
	cur := n
	for i := 0; cur.LinkTo != nil; i++ {
		cur = cur.LinkTo
		if cur == n || i > 1<<20 {
			return n
		}
	}
	return cur
}

// NewDir returns a directory node with the given permission bits.
func NewDir(name string, perm uint32) *Node {
	return &Node{Name: name, Mode: TypeDir | perm&0o7777}
}

// SetExternal makes n a regular file whose bytes live in the objects dir
// under the name composefs uses for digest: "XX/rest" in lowercase hex.
func (n *Node) SetExternal(digest []byte, size uint64) {
	n.SetExternalShared(append([]byte(nil), digest...), size)
}

// SetExternalShared is SetExternal keeping digest itself rather than a
// copy, for callers whose ids are never modified. The payload is made
// with the image's redirect xattr value ("/" + payload) in one buffer,
// which the writer then uses instead of a copy: for a tree of 100k
// external files the two would be 30 MB at the writer's peak.
func (n *Node) SetExternalShared(digest []byte, size uint64) {
	n.Mode = TypeRegular | n.Mode&0o7777
	n.Size = size
	n.Content = nil
	n.Digest = digest
	if len(digest) == 0 {
		n.Payload, n.redirect = "", nil
		return
	}
	r := appendObjectPath(make([]byte, 1, len(digest)*2+2), digest)
	r[0] = '/'
	// The buffer is never written again, so the string may share it.
	n.Payload = unsafe.String(&r[1], len(r)-1)
	n.redirect = r
}

// redirectValue is the overlay redirect xattr value of an external file:
// the buffer SetExternalShared made when the payload is still that one,
// else a new one.
func (n *Node) redirectValue() []byte {
	if r := n.redirect; len(r) == len(n.Payload)+1 && unsafe.StringData(n.Payload) == &r[1] {
		return r
	}
	v := make([]byte, 1+len(n.Payload))
	v[0] = '/'
	copy(v[1:], n.Payload)
	return v
}

func appendObjectPath(b, digest []byte) []byte {
	const hexd = "0123456789abcdef"
	if len(digest) < 2 {
		for _, c := range digest {
			b = append(b, hexd[c>>4], hexd[c&15])
		}
		return b
	}
	// Grown once and filled by index: an image writes one per external
	// file.
	n := len(b)
	b = slices.Grow(b, 2*len(digest)+1)[:n+2*len(digest)+1]
	o := b[n:]
	o[0], o[1], o[2] = hexd[digest[0]>>4], hexd[digest[0]&15], '/'
	o = o[3:]
	for i, c := range digest[1:] {
		o[2*i], o[2*i+1] = hexd[c>>4], hexd[c&15]
	}
	return b
}

// ObjectPath is the path of an object inside a composefs objects dir.
func ObjectPath(digest []byte) string {
	const hexd = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(digest)*2 + 1)
	for i, c := range digest {
		if i == 1 {
			b.WriteByte('/')
		}
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

// ValidName reports why name cannot be a directory entry, or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty file name")
	case name == "." || name == "..":
		return fmt.Errorf("invalid file name %q", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("file name longer than %d bytes", MaxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("file name %q contains '/' or NUL", name)
	}
	return nil
}

// Lookup returns the child called name, or nil.
func (n *Node) Lookup(name string) *Node {
	i := sort.Search(len(n.Children), func(i int) bool { return n.Children[i].Name >= name })
	if i < len(n.Children) && n.Children[i].Name == name {
		return n.Children[i]
	}
	return nil
}

// AddChild inserts child under n keeping the children sorted.
func (n *Node) AddChild(child *Node) error {
	if !n.IsDir() {
		return fmt.Errorf("%q is not a directory", n.Name)
	}
	if err := ValidName(child.Name); err != nil {
		return err
	}
	i := sort.Search(len(n.Children), func(i int) bool { return n.Children[i].Name >= child.Name })
	if i < len(n.Children) && n.Children[i].Name == child.Name {
		return fmt.Errorf("%q already exists", child.Name)
	}
	// Appending in order is the common case (sorted input); keep it O(1).
	if i == len(n.Children) {
		n.Children = append(n.Children, child)
	} else {
		n.Children = append(n.Children, nil)
		copy(n.Children[i+1:], n.Children[i:])
		n.Children[i] = child
	}
	child.parent = n
	return nil
}

// SetXattr sets or replaces an xattr.
func (n *Node) SetXattr(name string, value []byte) { n.Xattrs = setXattr(n.Xattrs, name, value) }

// setXattr replaces name's value in xs, or appends it, keeping the order
// the rest were set in.
func setXattr(xs []Xattr, name string, value []byte) []Xattr {
	for i := range xs {
		if xs[i].Name == name {
			xs[i].Value = value
			return xs
		}
	}
	return append(xs, Xattr{Name: name, Value: value})
}

// GetXattr returns the value of an xattr and whether it exists.
func (n *Node) GetXattr(name string) ([]byte, bool) {
	for _, x := range n.Xattrs {
		if x.Name == name {
			return x.Value, true
		}
	}
	return nil, false
}

// Path returns the absolute path of n in its tree.
func (n *Node) Path() string {
	if n.parent == nil {
		return "/"
	}
	var parts []string
	for cur := n; cur.parent != nil; cur = cur.parent {
		parts = append(parts, cur.Name)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(parts[i])
	}
	return b.String()
}

// Walk visits n and its descendants in pre-order with sorted children,
// the dumpfile order. fn's path is absolute.
func Walk(root *Node, fn func(path string, n *Node) error) error {
	return walk("/", root, fn)
}

func walk(path string, n *Node, fn func(string, *Node) error) error {
	if err := fn(path, n); err != nil {
		return err
	}
	prefix := path
	if prefix != "/" {
		prefix += "/"
	}
	for _, c := range n.Children {
		if err := walk(prefix+c.Name, c, fn); err != nil {
			return err
		}
	}
	return nil
}
