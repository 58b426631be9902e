package erofs

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unsafe"
)

// inode is the writer's private, rewritten copy of one inode: the caller's
// tree is never modified. A tree of 100k entries has as many of these,
// alive together with the caller's tree while the image is made: the
// struct is kept small and holds no slice it does not need (a pull's
// heap is limited, and every collection of it scans them all).
type inode struct {
	mode      uint32
	uid, gid  uint32
	nlink     uint32
	mtimeSec  int64
	mtimeNsec uint32
	rdev      uint32
	// stSize is the size mkcomposefs tests against the compact-inode
	// limit: the dumpfile size even for devices.
	stSize uint64
	// data is, by type: the bytes of an inline regular file; the target
	// of a symlink (the string's bytes, never written); the fs-verity
	// digest of an external file, shared with the caller, from which its
	// overlay metacopy and redirect xattrs (placeholders in xattrs, virt
	// says which) are made when they are needed: kept, they were about
	// 220 bytes per external file, a fifth of the writer's memory on a
	// tree of 100k files.
	data    []byte
	xattrs  []Xattr
	dirents []dirent

	ino uint32
	// shared is 0 when none of the inode's xattrs is in the shared
	// table, else 1 + the index in image.sharedOffs of its xattrs'
	// offsets there (-1 for one stored in the inode). Filled by layout.
	shared uint32
	// Layout, filled by layout().
	nb, tail  uint32
	xattrSize uint32
	ipad      uint32
	nid       uint64
	blkaddr   uint32

	external bool
	compact  bool
	virt     uint8 // virtMetacopy | virtRedirect
	// fixed says a leaf's nlink was given (Node.Nlink), so further names
	// (Builder.Link) do not count; staticX that xattrs is one of the
	// read-only slices below, shared by many inodes (setXattr copies it).
	fixed, staticX bool
}

// The xattrs of most external files: the two placeholders alone, or,
// until Entry.SetDigest, the empty metacopy of a file without a digest.
// Shared by every such inode instead of a slice each (80 bytes per
// file); never written (inode.setXattr copies them first).
var (
	xattrsVirtual  = []Xattr{{Name: xattrMetacopy}, {Name: xattrRedirect}}
	xattrsNoDigest = []Xattr{{Name: xattrMetacopy, Value: []byte{}}}
	filterVirtual  = xattrFilter(xattrsVirtual)
)

// symlink is the target of a symlink inode.
func (in *inode) symlink() []byte { return in.data }

// Placeholder xattrs of an external file (inode.virt).
const (
	virtMetacopy = 1 << iota
	virtRedirect
)

// virtual reports which placeholder x, one of in's xattrs, is (0: none).
func (in *inode) virtual(x *Xattr) uint8 {
	if in.virt == 0 {
		return 0
	}
	switch x.Name {
	case xattrMetacopy:
		return in.virt & virtMetacopy
	case xattrRedirect:
		return in.virt & virtRedirect
	}
	return 0
}

// xattrValue is the value of x, one of in's xattrs; a placeholder's is
// made in buf.
func (in *inode) xattrValue(x *Xattr, buf []byte) []byte {
	switch in.virtual(x) {
	case virtMetacopy:
		return appendMetacopy(buf[:0], in.data)
	case virtRedirect:
		return appendObjectPath(append(buf[:0], '/'), in.data)
	}
	return x.Value
}

// xattrValueLen is len(in.xattrValue(x, nil)) without making it.
func (in *inode) xattrValueLen(x *Xattr) int {
	switch in.virtual(x) {
	case virtMetacopy:
		return 4 + len(in.data)
	case virtRedirect:
		return 2 + 2*len(in.data)
	}
	return len(x.Value)
}

type dirent struct {
	name   string
	target *inode
	// link marks a hardlink name: the inode is laid out where its
	// canonical name is, not here.
	link bool
}

func (in *inode) typ() uint32 { return in.mode & TypeMask }

func (in *inode) setXattr(name string, value []byte) {
	if in.staticX {
		in.xattrs = append(make([]Xattr, 0, len(in.xattrs)+1), in.xattrs...)
		in.staticX = false
	}
	in.xattrs = setXattr(in.xattrs, name, value)
}

// builder turns a Node tree into inodes, applying the composefs rewrite
// (mkcomposefs rewrite_tree_for_erofs) on the way.
type builder struct {
	version int
	inodes  map[*Node]*inode
	links   []pendingLink
	nameCnt map[*Node]uint32
}

type pendingLink struct {
	dir    *inode
	name   string
	target *Node
	path   string
}

// effectiveVersion applies mkcomposefs's rule: a tree with a whiteout
// (char device 0:0) is written as version 1 if the maximum allows it.
func effectiveVersion(root *Node, opts Options) int {
	v, maxv := opts.Version, opts.MaxVersion
	if maxv < v {
		maxv = v
	}
	if v >= 1 || maxv < 1 {
		return v
	}
	found := false
	var visit func(n *Node)
	visit = func(n *Node) {
		if found || n.LinkTo != nil {
			return
		}
		if n.Mode&TypeMask == TypeChar && n.Rdev == 0 {
			found = true
			return
		}
		for _, c := range n.Children {
			visit(c)
		}
	}
	visit(root)
	if found {
		return 1
	}
	return v
}

// buildInodes converts the tree under root and returns its root inode and
// about how many inodes there are.
func buildInodes(root *Node, version int) (*inode, int, error) {
	if root == nil || !root.IsDir() {
		return nil, 0, fmt.Errorf("erofs: root must be a directory")
	}
	b := &builder{version: version, inodes: map[*Node]*inode{}, nameCnt: map[*Node]uint32{}}
	r, err := b.convert(root, nil, "/")
	if err != nil {
		return nil, 0, err
	}
	for _, l := range b.links {
		t := l.target.Inode()
		if t.LinkTo != nil {
			return nil, 0, fmt.Errorf("erofs: %s: hardlink cycle", l.path)
		}
		if t.IsDir() {
			return nil, 0, fmt.Errorf("erofs: %s: hardlink to a directory", l.path)
		}
		ti, ok := b.inodes[t]
		if !ok {
			return nil, 0, fmt.Errorf("erofs: %s: hardlink target is not in the tree", l.path)
		}
		b.nameCnt[t]++
		l.dir.dirents = append(l.dir.dirents, dirent{name: l.name, target: ti, link: true})
	}
	for n, in := range b.inodes {
		if in.typ() == TypeDir {
			continue
		}
		if n.Nlink != 0 {
			in.nlink = n.Nlink
		} else {
			in.nlink = b.nameCnt[n]
		}
	}
	r.setXattr(xattrOpaque, []byte("y"))
	addStubs(r)
	if err := finishDirs(r); err != nil {
		return nil, 0, err
	}
	return r, len(b.inodes) + 256, nil
}

// convert copies n (a non-link node) and its subtree, escaping and adding
// the overlayfs xattrs as mkcomposefs does.
func (b *builder) convert(n *Node, parent *inode, path string) (*inode, error) {
	if !ValidType(n.Mode) {
		return nil, fmt.Errorf("erofs: %s: invalid file mode %o", path, n.Mode)
	}
	if _, dup := b.inodes[n]; dup {
		return nil, fmt.Errorf("erofs: %s: node appears twice in the tree", path)
	}
	if len(n.Children) > 0 && !n.IsDir() {
		return nil, fmt.Errorf("erofs: %s: only directories can have children", path)
	}
	in, err := b.convertNode(n, parent, where{full: path}, nil)
	if err != nil {
		return nil, err
	}
	b.inodes[n] = in
	b.nameCnt[n]++
	if n.IsDir() {
		prefix := path
		if prefix != "/" {
			prefix += "/"
		}
		for _, c := range n.Children {
			if c == nil {
				return nil, fmt.Errorf("erofs: %s: nil child", path)
			}
			cpath := prefix + c.Name
			if err := ValidName(c.Name); err != nil {
				return nil, fmt.Errorf("erofs: %s: %w", cpath, err)
			}
			if c.LinkTo != nil {
				b.links = append(b.links, pendingLink{dir: in, name: c.Name, target: c.LinkTo, path: cpath})
				continue
			}
			ci, err := b.convert(c, in, cpath)
			if err != nil {
				return nil, err
			}
			in.dirents = append(in.dirents, dirent{c.Name, ci, false})
		}
	}
	return in, nil
}

// where names an entry in messages, made only for one: the builder of a
// 100k-entry tree would otherwise make as many path strings for nothing.
type where struct {
	dir  *inode // the directory the entry is added to (nil: full is the path)
	name string
	full string
}

func (w where) String() string {
	if w.dir == nil {
		return w.full
	}
	return childPath(w.dir.path(), w.name)
}

// path is the path of a directory inode, found through the ".." entries
// and the names in each parent (for messages only).
func (in *inode) path() string {
	parent := in.dotdot()
	if parent == nil || parent == in {
		return "/"
	}
	for _, d := range parent.dirents {
		if d.target == in && !d.link {
			return childPath(parent.path(), d.name)
		}
	}
	return "?"
}

func (in *inode) dotdot() *inode {
	for _, d := range in.dirents {
		if d.name == ".." && d.link {
			return d.target
		}
	}
	return nil
}

// convertNode makes the inode of n alone, not of its children: the
// escaped xattrs, the overlayfs xattrs mkcomposefs adds, and for a
// directory its "." and ".." entries. parent is nil for the root. A
// non-nil obj, a SHA-256 or SHA-512 digest, makes n the external file
// n.SetExternalShared(obj, n.Size) would, without the payload string.
func (b *builder) convertNode(n *Node, parent *inode, path where, obj []byte) (*inode, error) {
	mode, content, digest, payload := n.Mode, n.Content, n.Digest, n.Payload
	if obj != nil {
		mode, content, digest, payload = TypeRegular|n.Mode&0o7777, nil, obj, ""
	}
	if !ValidType(mode) {
		return nil, fmt.Errorf("erofs: %s: invalid file mode %o", path, mode)
	}
	in := &inode{
		mode: mode, uid: n.UID, gid: n.GID, mtimeSec: n.MtimeSec, mtimeNsec: n.MtimeNsec,
		stSize: n.Size, rdev: uint32(n.Rdev),
	}
	if len(n.Xattrs) > 0 {
		in.xattrs = make([]Xattr, 0, len(n.Xattrs)+2)
	}
	for _, x := range n.Xattrs {
		if len(x.Name) == 0 || len(x.Name) > maxXattrName {
			return nil, fmt.Errorf("erofs: %s: xattr name %q: length must be 1..%d", path, x.Name, maxXattrName)
		}
		if len(x.Value) > maxXattrValue {
			return nil, fmt.Errorf("erofs: %s: xattr %s: value longer than %d bytes", path, x.Name, maxXattrValue)
		}
		name := x.Name
		// User data that looks like overlayfs metadata is escaped so the
		// outer overlay passes it through instead of acting on it.
		if len(name) >= len(overlayPrefix) && name[:len(overlayPrefix)] == overlayPrefix {
			name = overlayEscapePrefix + name[len(overlayPrefix):]
		}
		in.setXattr(name, x.Value)
	}
	switch mode & TypeMask {
	case TypeRegular:
		if len(content) > 0 {
			if uint64(len(content)) != n.Size {
				return nil, fmt.Errorf("erofs: %s: inline content is %d bytes but size is %d", path, len(content), n.Size)
			}
			in.data = content
		} else if n.Size > 0 {
			in.external = true
			if _, count := chunking(n.Size); count > maxChunks {
				return nil, fmt.Errorf("erofs: %s: file size %d too large for an external file", path, n.Size)
			}
			var mc []byte
			if l := len(digest); l == 32 || l == 64 {
				in.data = digest
				in.virt |= virtMetacopy
			} else {
				var err error
				if mc, err = metacopyValue(digest); err != nil {
					return nil, fmt.Errorf("erofs: %s: %w", path, err)
				}
			}
			redirect, rv := obj != nil || payload != "", []byte(nil)
			if redirect {
				if obj != nil || in.data != nil && isObjectPath(payload, in.data) {
					in.virt |= virtRedirect
				} else {
					rv = n.redirectValue()
				}
			}
			switch {
			case in.xattrs != nil:
				in.setXattr(xattrMetacopy, mc)
				if redirect {
					in.setXattr(xattrRedirect, rv)
				}
			case in.virt == virtMetacopy|virtRedirect:
				in.xattrs, in.staticX = xattrsVirtual, true
			case in.virt == 0 && !redirect:
				in.xattrs, in.staticX = xattrsNoDigest, true
			default:
				in.xattrs = make([]Xattr, 0, 2)
				in.setXattr(xattrMetacopy, mc)
				if redirect {
					in.setXattr(xattrRedirect, rv)
				}
			}
		}
	case TypeSymlink:
		if payload == "" {
			return nil, fmt.Errorf("erofs: %s: symlink with empty target", path)
		}
		if len(payload) > maxPayloadLen {
			return nil, fmt.Errorf("erofs: %s: symlink target longer than %d bytes", path, maxPayloadLen)
		}
		// The string's bytes, never written.
		in.data = unsafe.Slice(unsafe.StringData(payload), len(payload))
		in.stSize = uint64(len(payload))
	case TypeChar:
		if n.Rdev == 0 {
			// A whiteout would be swallowed by the outer overlay, so it is
			// stored as an escaped-whiteout regular file.
			in.stSize = 0
			in.mode = TypeRegular | mode&0o7777
			in.setXattr(xattrEscWhiteout, []byte{})
			in.setXattr(xattrUserWhiteout, []byte{})
			p := parent
			if p == nil {
				p = in
			}
			p.setXattr(xattrEscWhiteouts, []byte{})
			p.setXattr(xattrUserWhiteouts, []byte{})
			if b.version >= 1 {
				p.setXattr(xattrEscOpaque, []byte("x"))
				p.setXattr(xattrUserOpaque, []byte("x"))
			}
		}
	}
	if mode&TypeMask == TypeDir {
		self := parent
		if self == nil {
			self = in
		}
		in.dirents = append(in.dirents, dirent{".", in, true}, dirent{"..", self, true})
	}
	return in, nil
}

func metacopyValue(digest []byte) ([]byte, error) {
	switch len(digest) {
	case 0:
		return []byte{}, nil
	case 32, 64:
	default:
		return nil, fmt.Errorf("digest of %d bytes is neither SHA-256 nor SHA-512", len(digest))
	}
	return appendMetacopy(make([]byte, 0, 4+len(digest)), digest), nil
}

// appendMetacopy appends the overlay metacopy value of a SHA-256 or
// SHA-512 digest.
func appendMetacopy(b, digest []byte) []byte {
	alg := byte(fsverityAlgSHA256)
	if len(digest) == 64 {
		alg = fsverityAlgSHA512
	}
	b = append(b, 0, byte(4+len(digest)), 0, alg)
	return append(b, digest...)
}

// isObjectPath reports whether payload is ObjectPath(digest).
func isObjectPath(payload string, digest []byte) bool {
	const hexd = "0123456789abcdef"
	if len(digest) == 0 || len(payload) != 2*len(digest)+1 {
		return false
	}
	j := 0
	for i, c := range digest {
		if i == 1 {
			if payload[j] != '/' {
				return false
			}
			j++
		}
		if payload[j] != hexd[c>>4] || payload[j+1] != hexd[c&15] {
			return false
		}
		j += 2
	}
	return true
}

// addStubs gives the root the 256 whiteouts 00..ff that hide the XX object
// dirs when the objects dir is mounted as an ordinary lower layer.
func addStubs(root *inode) {
	const hexd = "0123456789abcdef"
	sel, hasSel := []byte(nil), false
	for _, x := range root.xattrs {
		if x.Name == xattrSELinux {
			sel, hasSel = x.Value, true
		}
	}
	existing := make(map[string]bool, len(root.dirents))
	for _, d := range root.dirents {
		existing[d.name] = true
	}
	for i := 0; i < 256; i++ {
		name := string([]byte{hexd[i>>4], hexd[i&15]})
		if existing[name] {
			continue
		}
		s := &inode{mode: TypeChar | 0o644, uid: root.uid, gid: root.gid,
			mtimeSec: root.mtimeSec, mtimeNsec: root.mtimeNsec, nlink: 1}
		if hasSel {
			s.xattrs = []Xattr{{Name: xattrSELinux, Value: sel}}
		}
		root.dirents = append(root.dirents, dirent{name, s, false})
	}
}

// finishDirs sorts every directory's entries, rejects duplicates and
// computes the directory link counts.
func finishDirs(root *inode) error {
	queue := []*inode{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		sortDirents(d.dirents)
		nlink := uint32(2)
		for i, e := range d.dirents {
			if i > 0 && d.dirents[i-1].name == e.name {
				return fmt.Errorf("erofs: duplicate directory entry %q", e.name)
			}
			if !e.link && e.target.typ() == TypeDir {
				nlink++
				queue = append(queue, e.target)
			}
		}
		d.nlink = nlink
	}
	return nil
}

// sortDirents sorts a directory's entries by name. Most come sorted
// already (a Builder's callers add them in order, after "." and ".."):
// those are only checked.
func sortDirents(d []dirent) {
	for i := 1; i < len(d); i++ {
		if d[i-1].name > d[i].name {
			slices.SortFunc(d, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
			return
		}
	}
}

// sortXattrs sorts by name (unique in a list). It never writes to a
// sorted list (some are shared, see xattrsVirtual) and allocates nothing:
// most lists are short, and sorted already.
func sortXattrs(xs []Xattr) {
	if len(xs) > 16 {
		if !slices.IsSortedFunc(xs, cmpXattrName) {
			slices.SortFunc(xs, cmpXattrName)
		}
		return
	}
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j].Name < xs[j-1].Name; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}

func cmpXattrName(a, b Xattr) int { return strings.Compare(a.Name, b.Name) }

// sharedLess orders the shared table as mkcomposefs does: descending by
// name, then by value length, then by value bytes.
func sharedLess(a, b Xattr) bool {
	if a.Name != b.Name {
		return a.Name > b.Name
	}
	if len(a.Value) != len(b.Value) {
		return len(a.Value) > len(b.Value)
	}
	return bytes.Compare(a.Value, b.Value) > 0
}
