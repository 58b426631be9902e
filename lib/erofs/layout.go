package erofs

import (
	"bytes"
	"hash/maphash"
	"math/bits"
	"sort"
)

// image is a fully laid-out composefs image, ready to be emitted.
type image struct {
	version int
	inodes  []*inode // BFS order; index = i_ino
	shared  []Xattr
	// sharedOffs holds, for each inode with a shared xattr
	// (inode.shared), the offset in the shared table of each of its
	// xattrs, or -1.
	sharedOffs []int64
	sharedSize uint64
	inodesEnd  uint64
	dataStart  uint64
	dataBlocks uint64
	minSec     int64
	minNsec    uint32
	hasACL     bool
	// tooManyXattrs is an inode whose xattrs the format cannot hold.
	tooManyXattrs *inode
}

// chunking returns the chunk size bits and chunk count of an external
// file, as mkcomposefs chooses them: one chunk covering the whole file when
// possible (chunkbits = bitlen(size-1), at least one block).
func chunking(size uint64) (chunkBits uint32, count uint64) {
	chunkBits = uint32(bits.Len64(size - 1))
	if chunkBits < blockBits {
		chunkBits = blockBits
	}
	if chunkBits-blockBits > 31 {
		chunkBits = 31 + blockBits
	}
	return chunkBits, (size + (1 << chunkBits) - 1) >> chunkBits
}

// layout numbers and places the inodes under root; count, the number of
// inodes if known, sizes the table.
func layout(root *inode, version int, count int) *image {
	img := &image{version: version, inodes: make([]*inode, 1, max(count, 1))}
	img.inodes[0] = root
	// Breadth first, each directory's entries in name order; a
	// hardlink's inode is where its first name is.
	for i := 0; i < len(img.inodes); i++ {
		for _, d := range img.inodes[i].dirents {
			if !d.link {
				img.inodes = append(img.inodes, d.target)
			}
		}
	}
	img.minSec, img.minNsec = root.mtimeSec, root.mtimeNsec
	for i, in := range img.inodes {
		in.ino = uint32(i)
		sortXattrs(in.xattrs)
		if in.mtimeSec < img.minSec || (in.mtimeSec == img.minSec && in.mtimeNsec < img.minNsec) {
			img.minSec, img.minNsec = in.mtimeSec, in.mtimeNsec
		}
		for _, x := range in.xattrs {
			if x.Name == xattrACLAccess || x.Name == xattrACLDefault {
				img.hasACL = true
			}
		}
	}
	img.computeShared()
	img.place()
	return img
}

// computeShared puts every (name, value) pair used by more than one inode
// into the shared table. Pairs are interned to small ids first: a tree of
// 100k files has few distinct pairs (SELinux labels) but many uses, and
// as many unique ones as external files (their digest and object path).
// The index is keyed by a hash of the pair, not by a copy of it, and
// candidates are compared with the pair itself. An overlay metacopy or
// redirect value made from a digest (pairDigest) is hashed and compared
// by its kind and digest, without making the value: an external file's
// two placeholders are then found with one lookup of its digest.
func (img *image) computeShared() {
	nx, keys := 0, 0
	for _, in := range img.inodes {
		nx += len(in.xattrs)
		keys += len(in.xattrs)
		if in.virt == virtMetacopy|virtRedirect {
			keys-- // both placeholders are under the digest's hash
		}
	}
	// Sized for the worst case (every pair distinct), so that none of
	// these grows by copying while the tree's inodes are all in memory.
	head := make(map[uint64]int32, keys) // hash -> the latest distinct pair with it
	distinct := make([]xattrRef, 0, nx)  // into the inodes' own xattrs
	next := make([]int32, 0, nx)         // per distinct pair: the previous one with its hash, or -1
	count := make([]int32, 0, nx)
	flat := make([]int32, 0, nx) // every inode's pair ids, in inode order
	seed := maphash.MakeSeed()
	var h maphash.Hash
	h.SetSeed(seed)
	var pbuf, cbuf []byte // digests decoded from stored redirect values
	// same reports whether distinct pair d is (kind, dig) or, for kind
	// 0, x.
	same := func(d xattrRef, kind uint8, dig []byte, x *Xattr) bool {
		dx := &d.in.xattrs[d.j]
		var dk uint8
		var dd []byte
		dk, dd, cbuf = pairDigest(d.in, dx, cbuf)
		if kind != 0 || dk != 0 {
			return kind == dk && bytes.Equal(dig, dd)
		}
		return dx.Name == x.Name && bytes.Equal(dx.Value, x.Value)
	}
	add := func(in *inode, j int, prev int32) int32 {
		id := int32(len(distinct))
		next = append(next, prev)
		distinct = append(distinct, xattrRef{in, int32(j)})
		count = append(count, 0)
		return id
	}
	for _, in := range img.inodes {
		// The chain of the inode's digest, looked up once for both of
		// its placeholders and stored back once.
		var dk uint64
		dhead, dset, dirty := int32(-1), false, false
		for j := range in.xattrs {
			x := &in.xattrs[j]
			kind, dig, buf := pairDigest(in, x, pbuf)
			pbuf = buf
			var id int32
			if kind != 0 {
				placeholder := in.virtual(x) != 0
				if !dset || !placeholder {
					if dirty {
						head[dk] = dhead
					}
					dk = maphash.Bytes(seed, dig)
					var ok bool
					if dhead, ok = head[dk]; !ok {
						dhead = -1
					}
					dset, dirty = placeholder, false
				}
				for id = dhead; id >= 0 && !same(distinct[id], kind, dig, x); id = next[id] {
				}
				if id < 0 {
					id = add(in, j, dhead)
					dhead, dirty = id, true
				}
				if !placeholder {
					if dirty {
						head[dk] = dhead
					}
					dset, dirty = false, false
				}
			} else {
				// The digest chain's head goes back first: this pair's
				// hash could be the digest's.
				if dirty {
					head[dk] = dhead
				}
				dset, dirty = false, false
				h.Reset()
				h.WriteString(x.Name)
				h.WriteByte(0)
				h.Write(x.Value)
				k := h.Sum64()
				first, ok := head[k]
				if !ok {
					first = -1
				}
				for id = first; id >= 0 && !same(distinct[id], 0, nil, x); id = next[id] {
				}
				if id < 0 {
					id = add(in, j, first)
					head[k] = id
				}
			}
			count[id]++
			flat = append(flat, id)
		}
		if dirty {
			head[dk] = dhead
		}
	}
	// The shared pairs, with their values made: few, and each written
	// once into the table.
	var shared []int32
	var sharedX []Xattr
	for id, c := range count {
		if c > 1 {
			d := distinct[id]
			x := d.in.xattrs[d.j]
			if d.in.virtual(&x) != 0 {
				x.Value = d.in.xattrValue(&x, nil)
			}
			shared = append(shared, int32(id))
			sharedX = append(sharedX, x)
		}
	}
	order := make([]int, len(shared))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return sharedLess(sharedX[order[i]], sharedX[order[j]]) })
	offsets := make([]int64, len(distinct))
	for i := range offsets {
		offsets[i] = -1
	}
	var off uint64
	img.shared = make([]Xattr, 0, len(shared))
	for _, i := range order {
		x := sharedX[i]
		offsets[shared[i]] = int64(off)
		off += xattrEntrySize(x.Name, len(x.Value))
		img.shared = append(img.shared, x)
	}
	img.sharedSize = off
	for _, in := range img.inodes {
		if len(in.xattrs) == 0 {
			continue
		}
		ids := flat[:len(in.xattrs)]
		flat = flat[len(in.xattrs):]
		in.shared = 0
		some := false
		for _, id := range ids {
			if offsets[id] >= 0 {
				some = true
				break
			}
		}
		if !some {
			continue
		}
		in.shared = uint32(len(img.sharedOffs)) + 1
		n := 0
		for _, id := range ids {
			if o := offsets[id]; o >= 0 && n < maxSharedPerInode {
				img.sharedOffs = append(img.sharedOffs, o)
				n++
			} else {
				img.sharedOffs = append(img.sharedOffs, -1)
			}
		}
	}
}

// sharedOff is the offset in the shared table of in's xattr j, or -1
// when the inode stores it.
func (img *image) sharedOff(in *inode, j int) int64 {
	if in.shared == 0 {
		return -1
	}
	return img.sharedOffs[int(in.shared)-1+j]
}

func (img *image) xattrCounts(in *inode) (nShared int, local uint64) {
	for i := range in.xattrs {
		if img.sharedOff(in, i) >= 0 {
			nShared++
		} else {
			x := &in.xattrs[i]
			local += xattrEntrySize(x.Name, in.xattrValueLen(x))
		}
	}
	return
}

// pairDigest reports whether x, one of in's xattrs, is an overlay metacopy
// (kind virtMetacopy) or redirect (virtRedirect) value made from a
// SHA-256 or SHA-512 digest, and returns that digest: a placeholder's,
// or one a stored value spells out exactly, so that equal values are
// found equal however they are held. A redirect's digest is decoded into
// buf, which is returned for reuse.
func pairDigest(in *inode, x *Xattr, buf []byte) (kind uint8, digest, rbuf []byte) {
	if v := in.virtual(x); v != 0 {
		return v, in.data, buf
	}
	switch x.Name {
	case xattrMetacopy:
		v := x.Value
		if (len(v) == 4+32 && v[3] == fsverityAlgSHA256 || len(v) == 4+64 && v[3] == fsverityAlgSHA512) &&
			v[0] == 0 && v[1] == byte(len(v)) && v[2] == 0 {
			return virtMetacopy, v[4:], buf
		}
	case xattrRedirect:
		// "/" + ObjectPath(digest): "/xx/" and the rest, lowercase.
		v := x.Value
		if (len(v) == 2+2*32 || len(v) == 2+2*64) && v[0] == '/' && v[3] == '/' {
			buf = buf[:0]
			for i := 1; i < len(v); i += 2 {
				if i == 3 {
					i++
				}
				hi, lo := lowerHex(v[i]), lowerHex(v[i+1])
				if hi < 0 || lo < 0 {
					return 0, nil, buf
				}
				buf = append(buf, byte(hi<<4|lo))
			}
			return virtRedirect, buf, buf
		}
	}
	return 0, nil, buf
}

func lowerHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// xattrRef is one of an inode's xattrs.
type xattrRef struct {
	in *inode
	j  int32
}

// dirGroups splits a directory's entries into the groups that fill one
// block each; the last group is returned separately with its byte size.
func dirGroups(d []dirent) (full []int, lastStart int, lastSize uint64) {
	var size uint64
	for i, e := range d {
		l := uint64(direntSize + len(e.name))
		if size+l > BlockSize {
			full = append(full, i)
			size = 0
		}
		size += l
	}
	// full holds the start index of each group after the first.
	if len(full) > 0 {
		lastStart = full[len(full)-1]
	}
	return full, lastStart, size
}

func (in *inode) sizeClass() {
	in.nb, in.tail = 0, 0
	switch in.typ() {
	case TypeDir:
		full, _, last := dirGroups(in.dirents)
		in.nb = uint32(len(full))
		in.tail = uint32(last)
		// Never inline more than half a block.
		if in.tail > BlockSize/2 {
			in.nb++
			in.tail = 0
		}
	case TypeSymlink:
		in.tail = uint32(len(in.symlink()))
	case TypeRegular:
		if in.stSize == 0 {
			return
		}
		if in.external {
			// At most maxChunks (convertNode).
			_, count := chunking(in.stSize)
			in.tail = uint32(count * 4)
		} else {
			// Inline bytes the caller holds in memory: their block
			// count fits.
			in.nb = uint32(in.stSize / BlockSize)
			in.tail = uint32(in.stSize % BlockSize)
			if in.tail > BlockSize/2 {
				in.nb++
				in.tail = 0
			}
		}
	}
}

func (img *image) fitsCompact(in *inode) bool {
	if in.mtimeSec != img.minSec || in.mtimeNsec != img.minNsec {
		return false
	}
	if in.nlink > 0xFFFF || in.uid > 0xFFFF || in.gid > 0xFFFF {
		return false
	}
	size := in.stSize
	if in.typ() == TypeDir {
		size = uint64(in.nb)*BlockSize + uint64(in.tail)
	}
	return size <= 0xFFFFFFFF
}

// place assigns each inode its position (nid), padding so that no inline
// tail straddles a block, exactly as mkcomposefs compute_erofs_inodes.
func (img *image) place() {
	pos := uint64(superOffset + superSize)
	for _, in := range img.inodes {
		in.sizeClass()
		in.compact = img.fitsCompact(in)
		isz := uint64(extendedSize)
		if in.compact {
			isz = compactSize
		}
		var xattrSize uint64
		if len(in.xattrs) > 0 {
			ns, local := img.xattrCounts(in)
			xattrSize = roundUp(xattrHdrSize+uint64(ns)*4+local, 4)
			if icount(xattrSize) > 0xFFFF && img.tooManyXattrs == nil {
				img.tooManyXattrs = in
			}
		}
		in.xattrSize = uint32(xattrSize)
		tail := uint64(in.tail)
		ppos := pos
		pos = roundUp(pos, slotSize)
		var extra uint64
		if in.typ() == TypeSymlink {
			total := isz + xattrSize + tail
			if total/BlockSize > 0 {
				in.nb++
				in.tail = 0
			}
			// The boundary test uses the size before promotion.
			if pos/BlockSize != (pos+total-1)/BlockSize {
				extra = roundUp(pos, BlockSize) - pos
			}
		} else {
			rem := BlockSize - (pos+isz+xattrSize)%BlockSize
			if rem < tail {
				ep := roundUp(rem, slotSize)
				rem2 := BlockSize - (pos+isz+xattrSize+ep)%BlockSize
				if tail <= rem2 {
					extra = ep
				} else {
					in.nb++
					in.tail = 0
					extra = roundUp(pos, BlockSize) - pos
				}
			}
		}
		in.ipad = uint32(pos - ppos + extra)
		pos += extra
		in.nid = pos / slotSize
		img.dataBlocks += uint64(in.nb)
		pos += isz + xattrSize + uint64(in.tail)
	}
	img.inodesEnd = roundUp(pos, slotSize)
	img.dataStart = roundUp(img.inodesEnd+img.sharedSize, BlockSize)
	// The addresses are 32 bits on disk; check rejects an image whose
	// blocks do not all have one.
	cur := img.dataStart / BlockSize
	for _, in := range img.inodes {
		if in.nb > 0 {
			in.blkaddr = uint32(cur)
			cur += uint64(in.nb)
		}
	}
}
