package erofs

import (
	"bytes"
	"fmt"
	"sort"
)

// inode is the writer's private, rewritten copy of one inode: the caller's
// tree is never modified.
type inode struct {
	mode      uint32
	uid, gid  uint32
	nlink     uint32
	mtimeSec  int64
	mtimeNsec uint32
	rdev      uint32
	// stSize is the size mkcomposefs tests against the compact-inode
	// limit: the dumpfile size even for devices.
	stSize   uint64
	content  []byte
	symlink  string
	xattrs   []Xattr
	dirents  []dirent
	children []*inode // real (non-link) children in name order: BFS feed
	// digest is an external file's fs-verity digest, shared with the
	// caller. Its overlay metacopy and redirect xattrs are placeholders
	// in xattrs (virt says which) whose values are made from it when
	// they are needed: kept, they were about 220 bytes per external
	// file, a fifth of the writer's memory on a tree of 100k files.
	digest []byte

	ino      uint32
	external bool
	compact  bool
	virt     uint8 // virtMetacopy | virtRedirect
	// Layout, filled by layout().
	nb, tail   uint64
	xattrSize  uint64
	sharedOffs []int64 // per xattr: offset in the shared table, or -1
	ipad       uint64
	nid        uint64
	blkaddr    uint64
}

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
		return appendMetacopy(buf[:0], in.digest)
	case virtRedirect:
		return appendObjectPath(append(buf[:0], '/'), in.digest)
	}
	return x.Value
}

// xattrValueLen is len(in.xattrValue(x, nil)) without making it.
func (in *inode) xattrValueLen(x *Xattr) int {
	switch in.virtual(x) {
	case virtMetacopy:
		return 4 + len(in.digest)
	case virtRedirect:
		return 2 + 2*len(in.digest)
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

func (in *inode) setXattr(name string, value []byte) { in.xattrs = setXattr(in.xattrs, name, value) }

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

func buildInodes(root *Node, version int) (*inode, error) {
	if root == nil || !root.IsDir() {
		return nil, fmt.Errorf("erofs: root must be a directory")
	}
	b := &builder{version: version, inodes: map[*Node]*inode{}, nameCnt: map[*Node]uint32{}}
	r, err := b.convert(root, nil, "/")
	if err != nil {
		return nil, err
	}
	for _, l := range b.links {
		t := l.target.Inode()
		if t.LinkTo != nil {
			return nil, fmt.Errorf("erofs: %s: hardlink cycle", l.path)
		}
		if t.IsDir() {
			return nil, fmt.Errorf("erofs: %s: hardlink to a directory", l.path)
		}
		ti, ok := b.inodes[t]
		if !ok {
			return nil, fmt.Errorf("erofs: %s: hardlink target is not in the tree", l.path)
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
		return nil, err
	}
	return r, nil
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
	in, err := b.convertNode(n, parent, path)
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

// convertNode makes the inode of n alone, not of its children: the
// escaped xattrs, the overlayfs xattrs mkcomposefs adds, and for a
// directory its "." and ".." entries. parent is nil for the root.
func (b *builder) convertNode(n *Node, parent *inode, path string) (*inode, error) {
	if !ValidType(n.Mode) {
		return nil, fmt.Errorf("erofs: %s: invalid file mode %o", path, n.Mode)
	}
	in := &inode{
		mode: n.Mode, uid: n.UID, gid: n.GID, mtimeSec: n.MtimeSec, mtimeNsec: n.MtimeNsec,
		stSize: n.Size, rdev: uint32(n.Rdev),
		xattrs: make([]Xattr, 0, len(n.Xattrs)+2),
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
	switch n.Mode & TypeMask {
	case TypeRegular:
		if len(n.Content) > 0 {
			if uint64(len(n.Content)) != n.Size {
				return nil, fmt.Errorf("erofs: %s: inline content is %d bytes but size is %d", path, len(n.Content), n.Size)
			}
			in.content = n.Content
		} else if n.Size > 0 {
			in.external = true
			if _, count := chunking(n.Size); count > maxChunks {
				return nil, fmt.Errorf("erofs: %s: file size %d too large for an external file", path, n.Size)
			}
			if l := len(n.Digest); l == 32 || l == 64 {
				in.digest = n.Digest
				in.virt |= virtMetacopy
				in.setXattr(xattrMetacopy, nil)
			} else {
				mc, err := metacopyValue(n.Digest)
				if err != nil {
					return nil, fmt.Errorf("erofs: %s: %w", path, err)
				}
				in.setXattr(xattrMetacopy, mc)
			}
			if n.Payload != "" {
				if in.digest != nil && isObjectPath(n.Payload, in.digest) {
					in.virt |= virtRedirect
					in.setXattr(xattrRedirect, nil)
				} else {
					in.setXattr(xattrRedirect, n.redirectValue())
				}
			}
		}
	case TypeSymlink:
		if n.Payload == "" {
			return nil, fmt.Errorf("erofs: %s: symlink with empty target", path)
		}
		if len(n.Payload) > maxPayloadLen {
			return nil, fmt.Errorf("erofs: %s: symlink target longer than %d bytes", path, maxPayloadLen)
		}
		in.symlink = n.Payload
		in.stSize = uint64(len(n.Payload))
	case TypeChar:
		if n.Rdev == 0 {
			// A whiteout would be swallowed by the outer overlay, so it is
			// stored as an escaped-whiteout regular file.
			in.stSize = 0
			in.mode = TypeRegular | n.Mode&0o7777
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
	if n.IsDir() {
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
// computes the directory link counts and the BFS feed of real children.
func finishDirs(root *inode) error {
	queue := []*inode{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		sort.Slice(d.dirents, func(i, j int) bool { return d.dirents[i].name < d.dirents[j].name })
		nlink := uint32(2)
		for i, e := range d.dirents {
			if i > 0 && d.dirents[i-1].name == e.name {
				return fmt.Errorf("erofs: duplicate directory entry %q", e.name)
			}
			if e.link {
				continue
			}
			d.children = append(d.children, e.target)
			if e.target.typ() == TypeDir {
				nlink++
				queue = append(queue, e.target)
			}
		}
		d.nlink = nlink
	}
	return nil
}

func sortXattrs(xs []Xattr) {
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
}

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
