package erofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Image is a composefs image parsed back into the tree model.
type Image struct {
	Root *Node
	// Version is the composefs format version in the header (0 or 1);
	// writing Root with Options{Version, Version} reproduces the image.
	Version int
	HasACL  bool
}

// ErrFormat wraps every reason an image is rejected.
var ErrFormat = errors.New("not a valid composefs image")

func formatErr(f string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(f, args...))
}

type rawInode struct {
	nid       uint64
	mode      uint32
	layout    uint16
	nlink     uint32
	size      uint64
	iu        uint32
	uid, gid  uint32
	mtimeSec  int64
	mtimeNsec uint32
	ino       uint32
	xattrs    []Xattr
	tailOff   uint64 // offset of the inline tail in the image
}

type reader struct {
	data      []byte
	version   int
	xattrBase uint64
	buildSec  int64
	buildNsec uint32
	inodes    map[uint64]*rawInode
	shared    map[uint64]Xattr
	// noCache: inodes are decoded afresh on each visit and not kept
	// (ForEachExternal visits each once and must not hold them all).
	noCache bool
	// used counts the directory and file bytes handed out. The writer
	// never lets two inodes share data, so more than the image size means
	// a hostile image that would otherwise cost quadratic time or memory.
	used uint64
}

// Read parses a composefs image produced by mkcomposefs or composefs-rs
// (V0/V1) and inverts the composefs rewrite: overlay xattrs are removed or
// unescaped, escaped whiteouts become char devices 0:0 again, the root's
// 00..ff whiteout stubs are dropped. It never panics on malformed input.
func Read(data []byte) (*Image, error) {
	r, rootNid, err := open(data)
	if err != nil {
		return nil, err
	}
	img := &Image{Version: r.version, HasACL: binary.LittleEndian.Uint32(data[8:])&headerFlagHasACL != 0}
	root, err := r.tree(rootNid)
	if err != nil {
		return nil, err
	}
	img.Root = root
	return img, nil
}

// open checks the composefs header and the EROFS superblock and returns a
// reader positioned at nothing, with the root inode's nid.
func open(data []byte) (*reader, uint64, error) {
	le := binary.LittleEndian
	if len(data) < superOffset+superSize {
		return nil, 0, formatErr("image of %d bytes is too short", len(data))
	}
	if le.Uint32(data[0:]) != composefsMagic || le.Uint32(data[4:]) != composefsVersion {
		return nil, 0, formatErr("bad composefs header")
	}
	cv := le.Uint32(data[12:])
	if cv > 1 {
		return nil, 0, formatErr("composefs version %d is not supported", cv)
	}
	sb := data[superOffset:]
	if le.Uint32(sb[0:]) != erofsMagic || sb[12] != blockBits {
		return nil, 0, formatErr("bad EROFS superblock")
	}
	if le.Uint32(sb[80:]) & ^uint32(1) != 0 || le.Uint32(sb[40:]) != 0 || sb[13] != 0 {
		return nil, 0, formatErr("unsupported EROFS features")
	}
	r := &reader{
		data: data, version: int(cv),
		xattrBase: uint64(le.Uint32(sb[44:])) * BlockSize,
		buildSec:  int64(le.Uint64(sb[24:])), buildNsec: le.Uint32(sb[32:]),
		inodes: map[uint64]*rawInode{}, shared: map[uint64]Xattr{},
	}
	return r, uint64(le.Uint16(sb[14:])), nil
}

func (r *reader) slice(off, n uint64) ([]byte, error) {
	if off > uint64(len(r.data)) || n > uint64(len(r.data))-off {
		return nil, formatErr("range %d+%d is outside the image", off, n)
	}
	return r.data[off : off+n], nil
}

func (r *reader) inode(nid uint64) (*rawInode, error) {
	if in, ok := r.inodes[nid]; ok {
		return in, nil
	}
	le := binary.LittleEndian
	if nid > uint64(len(r.data))/slotSize {
		return nil, formatErr("nid %d is outside the image", nid)
	}
	off := nid * slotSize
	b, err := r.slice(off, compactSize)
	if err != nil {
		return nil, err
	}
	in := &rawInode{nid: nid}
	format := le.Uint16(b[0:])
	in.layout = format >> 1 & 7
	icount := uint64(le.Uint16(b[2:]))
	in.mode = uint32(le.Uint16(b[4:]))
	isz := uint64(compactSize)
	if format&1 == 0 {
		in.nlink = uint32(le.Uint16(b[6:]))
		in.size = uint64(le.Uint32(b[8:]))
		in.iu = le.Uint32(b[16:])
		in.ino = le.Uint32(b[20:])
		in.uid, in.gid = uint32(le.Uint16(b[24:])), uint32(le.Uint16(b[26:]))
		in.mtimeSec, in.mtimeNsec = r.buildSec, r.buildNsec
	} else {
		if b, err = r.slice(off, extendedSize); err != nil {
			return nil, err
		}
		isz = extendedSize
		in.size = le.Uint64(b[8:])
		in.iu = le.Uint32(b[16:])
		in.ino = le.Uint32(b[20:])
		in.uid, in.gid = le.Uint32(b[24:]), le.Uint32(b[28:])
		in.mtimeSec, in.mtimeNsec = int64(le.Uint64(b[32:])), le.Uint32(b[40:])
		in.nlink = le.Uint32(b[44:])
	}
	if format>>4 != 0 || (in.layout != layoutFlatPlain && in.layout != layoutFlatInline && in.layout != layoutChunkBased) {
		return nil, formatErr("inode %d: unsupported format %#x", nid, format)
	}
	if !ValidType(in.mode) {
		return nil, formatErr("inode %d: invalid mode %o", nid, in.mode)
	}
	xsize := uint64(0)
	if icount > 0 {
		xsize = xattrHdrSize + (icount-1)*4
	}
	if in.xattrs, err = r.xattrs(off+isz, xsize, nid); err != nil {
		return nil, err
	}
	in.tailOff = off + isz + xsize
	if !r.noCache {
		r.inodes[nid] = in
	}
	return in, nil
}

func (r *reader) xattrs(off, size, nid uint64) ([]Xattr, error) {
	if size == 0 {
		return nil, nil
	}
	body, err := r.slice(off, size)
	if err != nil {
		return nil, err
	}
	nShared := uint64(body[4])
	if xattrHdrSize+nShared*4 > size {
		return nil, formatErr("inode %d: shared xattr count %d overflows the xattr area", nid, nShared)
	}
	var out []Xattr
	for i := uint64(0); i < nShared; i++ {
		id := uint64(binary.LittleEndian.Uint32(body[xattrHdrSize+i*4:]))
		x, ok := r.shared[id]
		if !ok {
			x, _, err = r.xattrEntry(r.xattrBase + id*4)
			if err != nil {
				return nil, fmt.Errorf("inode %d: shared xattr: %w", nid, err)
			}
			r.shared[id] = x
		}
		out = append(out, x)
	}
	pos := off + xattrHdrSize + nShared*4
	for pos+4 <= off+size {
		x, n, err := r.xattrEntry(pos)
		if err != nil {
			return nil, fmt.Errorf("inode %d: %w", nid, err)
		}
		if pos+n > off+size {
			return nil, formatErr("inode %d: xattr overflows the xattr area", nid)
		}
		out = append(out, x)
		pos += n
	}
	return out, nil
}

func (r *reader) xattrEntry(off uint64) (Xattr, uint64, error) {
	h, err := r.slice(off, 4)
	if err != nil {
		return Xattr{}, 0, err
	}
	nameLen, idx, vlen := uint64(h[0]), h[1], uint64(binary.LittleEndian.Uint16(h[2:]))
	prefix, ok := xattrPrefixes[idx]
	if !ok {
		return Xattr{}, 0, formatErr("unknown xattr prefix index %d", idx)
	}
	b, err := r.slice(off+4, nameLen+vlen)
	if err != nil {
		return Xattr{}, 0, err
	}
	name := prefix + string(b[:nameLen])
	if name == "" {
		return Xattr{}, 0, formatErr("empty xattr name")
	}
	return Xattr{Name: name, Value: append([]byte{}, b[nameLen:]...)}, roundUp(4+nameLen+vlen, 4), nil
}

// fileData returns the bytes of a flat (plain or inline) inode.
func (r *reader) fileData(in *rawInode) ([]byte, error) {
	r.used += in.size
	if r.used > uint64(len(r.data)) {
		return nil, formatErr("inode %d: data overlaps other inodes' data", in.nid)
	}
	switch in.layout {
	case layoutFlatPlain:
		return r.slice(uint64(in.iu)*BlockSize, in.size)
	case layoutFlatInline:
		nb := in.size / BlockSize
		tail := in.size % BlockSize
		head, err := r.slice(uint64(in.iu)*BlockSize, nb*BlockSize)
		if nb == 0 {
			head, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		t, err := r.slice(in.tailOff, tail)
		if err != nil {
			return nil, err
		}
		if (in.tailOff)/BlockSize != (in.tailOff+tail-1)/BlockSize && tail > 0 {
			return nil, formatErr("inode %d: inline data crosses a block boundary", in.nid)
		}
		return append(append([]byte{}, head...), t...), nil
	}
	return nil, formatErr("inode %d: layout %d has no flat data", in.nid, in.layout)
}

type rawDirent struct {
	name  string
	nid   uint64
	ftype uint8
}

func (r *reader) dirents(in *rawInode) ([]rawDirent, error) {
	if in.layout == layoutChunkBased {
		return nil, formatErr("directory inode %d is chunk-based", in.nid)
	}
	data, err := r.fileData(in)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var out []rawDirent
	for len(data) > 0 {
		blk := data[:min(len(data), BlockSize)]
		data = data[len(blk):]
		if len(blk) < direntSize {
			return nil, formatErr("directory %d: truncated block", in.nid)
		}
		first := int(le.Uint16(blk[8:]))
		if first == 0 || first%direntSize != 0 || first > len(blk) {
			return nil, formatErr("directory %d: bad first name offset %d", in.nid, first)
		}
		n := first / direntSize
		for i := 0; i < n; i++ {
			e := blk[i*direntSize:]
			start := int(le.Uint16(e[8:]))
			end := len(blk)
			if i+1 < n {
				end = int(le.Uint16(blk[(i+1)*direntSize+8:]))
			} else if z := bytes.IndexByte(blk[min(start, len(blk)):], 0); z >= 0 {
				end = start + z
			}
			if start < first || end < start || end > len(blk) {
				return nil, formatErr("directory %d: bad name offsets", in.nid)
			}
			out = append(out, rawDirent{name: string(blk[start:end]), nid: le.Uint64(e[0:]), ftype: e[10]})
		}
	}
	return out, nil
}

type readEntry struct {
	dir       *Node
	name      string
	nid       uint64
	canonical bool
}

// tree walks the directories breadth-first, the order in which the writer
// numbered the inodes; that numbering tells which name of a hardlinked
// inode is the canonical one.
func (r *reader) tree(rootNid uint64) (*Node, error) {
	rootRaw, err := r.inode(rootNid)
	if err != nil {
		return nil, err
	}
	if rootRaw.mode&TypeMask != TypeDir {
		return nil, formatErr("root inode is not a directory")
	}
	root, err := r.node(rootRaw, "")
	if err != nil {
		return nil, err
	}
	dirs := []*Node{root}
	dirNids := map[uint64]*Node{rootNid: root}
	rawOf := map[*Node]*rawInode{root: rootRaw}
	var entries []readEntry
	names := map[uint64]int{}
	for i := 0; i < len(dirs); i++ {
		d := dirs[i]
		ents, err := r.dirents(rawOf[d])
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.name == "." || e.name == ".." {
				continue
			}
			if err := ValidName(e.name); err != nil {
				return nil, formatErr("directory entry: %v", err)
			}
			in, err := r.inode(e.nid)
			if err != nil {
				return nil, err
			}
			if in.mode&TypeMask == TypeDir {
				if _, seen := dirNids[e.nid]; seen {
					return nil, formatErr("directory inode %d has more than one name", e.nid)
				}
				sub, err := r.node(in, e.name)
				if err != nil {
					return nil, err
				}
				attach(d, sub)
				dirNids[e.nid] = sub
				rawOf[sub] = in
				dirs = append(dirs, sub)
				continue
			}
			entries = append(entries, readEntry{dir: d, name: e.name, nid: e.nid})
			names[e.nid]++
		}
	}
	r.pickCanonical(entries, names)
	nodes := map[uint64]*Node{}
	for _, e := range entries {
		if e.canonical {
			n, err := r.node(r.inodes[e.nid], e.name)
			if err != nil {
				return nil, err
			}
			nodes[e.nid] = n
		}
	}
	whiteoutDirs := map[*Node]bool{}
	for _, e := range entries {
		var n *Node
		if e.canonical {
			n = nodes[e.nid]
			if e.dir == root && isStub(n) {
				continue
			}
			if n.Mode&TypeMask == TypeChar && n.Rdev == 0 {
				whiteoutDirs[e.dir] = true
			}
		} else {
			n = &Node{Name: e.name, LinkTo: nodes[e.nid]}
		}
		attach(e.dir, n)
	}
	for _, d := range dirs {
		// Sorting once keeps a hostile, unsorted directory from costing
		// quadratic time.
		sort.SliceStable(d.Children, func(i, j int) bool { return d.Children[i].Name < d.Children[j].Name })
		for i := 1; i < len(d.Children); i++ {
			if d.Children[i].Name == d.Children[i-1].Name {
				return nil, formatErr("%s: duplicate entry %q", d.Path(), d.Children[i].Name)
			}
		}
		r.cleanDirXattrs(d, whiteoutDirs[d])
	}
	return root, nil
}

// pickCanonical marks, for each inode, the name at which the writer laid
// it out: the k-th inode in BFS order has i_ino k. Inodes whose numbering
// does not fit (another writer) fall back to their first name.
func (r *reader) pickCanonical(entries []readEntry, names map[uint64]int) {
	claimed := map[uint64]bool{}
	next := uint32(1)
	for i := range entries {
		e := &entries[i]
		in := r.inodes[e.nid]
		if claimed[e.nid] {
			continue
		}
		if names[e.nid] == 1 || in.ino == next {
			e.canonical = true
			claimed[e.nid] = true
			next++
		}
	}
	for i := range entries {
		e := &entries[i]
		if !claimed[e.nid] {
			e.canonical = true
			claimed[e.nid] = true
		}
	}
}

func attach(dir, n *Node) {
	dir.Children = append(dir.Children, n)
	n.parent = dir
}

func isStub(n *Node) bool {
	if n.Mode&TypeMask != TypeChar || n.Rdev != 0 || len(n.Name) != 2 {
		return false
	}
	const hexd = "0123456789abcdef"
	return strings.IndexByte(hexd, n.Name[0]) >= 0 && strings.IndexByte(hexd, n.Name[1]) >= 0
}

// node converts one inode, undoing the per-inode part of the rewrite.
func (r *reader) node(in *rawInode, name string) (*Node, error) {
	n := &Node{
		Name: name, Mode: in.mode, UID: in.uid, GID: in.gid,
		MtimeSec: in.mtimeSec, MtimeNsec: in.mtimeNsec, Nlink: in.nlink,
	}
	xs := in.xattrs
	get := func(k string) ([]byte, bool) {
		for _, x := range xs {
			if x.Name == k {
				return x.Value, true
			}
		}
		return nil, false
	}
	switch in.mode & TypeMask {
	case TypeDir:
		n.Size = in.size
	case TypeChar, TypeBlock:
		n.Rdev = uint64(in.iu)
	case TypeSymlink:
		if in.size == 0 || in.size > maxPayloadLen || in.layout == layoutChunkBased {
			return nil, formatErr("inode %d: symlink target of %d bytes", in.nid, in.size)
		}
		data, err := r.fileData(in)
		if err != nil {
			return nil, err
		}
		n.Payload = string(data)
		n.Size = uint64(len(n.Payload))
	case TypeRegular:
		n.Size = in.size
		if _, ok := get(xattrEscWhiteout); ok && in.size == 0 {
			n.Mode = TypeChar | in.mode&0o7777
			break
		}
		if in.layout == layoutChunkBased {
			if mc, ok := get(xattrMetacopy); ok && len(mc) >= 4 && int(mc[1]) == len(mc) {
				if (mc[3] == fsverityAlgSHA256 && len(mc) == 36) || (mc[3] == fsverityAlgSHA512 && len(mc) == 68) {
					n.Digest = append([]byte{}, mc[4:]...)
				}
			}
			if rd, ok := get(xattrRedirect); ok && len(rd) > 1 && rd[0] == '/' {
				n.Payload = string(rd[1:])
			}
		} else if in.size > 0 {
			data, err := r.fileData(in)
			if err != nil {
				return nil, err
			}
			n.Content = append([]byte{}, data...)
		}
	}
	isWhiteout := n.Mode&TypeMask == TypeChar && n.Rdev == 0
	for _, x := range xs {
		switch {
		case isWhiteout && (x.Name == xattrEscWhiteout || x.Name == xattrUserWhiteout):
		case strings.HasPrefix(x.Name, overlayEscapePrefix):
			n.Xattrs = append(n.Xattrs, Xattr{Name: overlayPrefix + x.Name[len(overlayEscapePrefix):], Value: x.Value})
		case strings.HasPrefix(x.Name, overlayPrefix):
			// metacopy, redirect, opaque: composefs's own.
		default:
			n.Xattrs = append(n.Xattrs, x)
		}
	}
	sort.SliceStable(n.Xattrs, func(i, j int) bool { return n.Xattrs[i].Name < n.Xattrs[j].Name })
	return n, nil
}

// cleanDirXattrs removes the markers the writer puts on a directory that
// holds whiteouts (already unescaped by node()).
func (r *reader) cleanDirXattrs(d *Node, hasWhiteouts bool) {
	if !hasWhiteouts {
		return
	}
	kept := d.Xattrs[:0]
	for _, x := range d.Xattrs {
		switch {
		case (x.Name == "trusted.overlay.whiteouts" || x.Name == xattrUserWhiteouts) && len(x.Value) == 0:
		case r.version >= 1 && (x.Name == "trusted.overlay.opaque" || x.Name == xattrUserOpaque) && string(x.Value) == "x":
		default:
			kept = append(kept, x)
		}
	}
	d.Xattrs = kept
}
