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
// candidates are compared with the pair itself.
func (img *image) computeShared() {
	nx := 0
	for _, in := range img.inodes {
		nx += len(in.xattrs)
	}
	// Sized for the worst case (every pair distinct), so that none of
	// these grows by copying while the tree's inodes are all in memory.
	head := make(map[uint64]int32, nx)  // hash -> the latest distinct pair with it
	distinct := make([]xattrRef, 0, nx) // into the inodes' own xattrs
	next := make([]int32, 0, nx)        // per distinct pair: the previous one with its hash, or -1
	count := make([]int32, 0, nx)
	flat := make([]int32, 0, nx) // every inode's pair ids, in inode order
	var h maphash.Hash
	h.SetSeed(maphash.MakeSeed())
	var vbuf, dbuf []byte // placeholder values are made here
	for _, in := range img.inodes {
		for j := range in.xattrs {
			x := &in.xattrs[j]
			v := x.Value
			if in.virt != 0 && in.virtual(x) != 0 {
				v = in.xattrValue(x, vbuf)
				vbuf = v
			}
			h.Reset()
			h.WriteString(x.Name)
			h.WriteByte(0)
			h.Write(v)
			k := h.Sum64()
			id, ok := head[k]
			for ok && id >= 0 {
				d := distinct[id]
				dx := &d.in.xattrs[d.j]
				if dx.Name == x.Name {
					dv := dx.Value
					if d.in.virtual(dx) != 0 {
						dv = d.in.xattrValue(dx, dbuf)
						dbuf = dv
					}
					if bytes.Equal(dv, v) {
						break
					}
				}
				id = next[id]
			}
			if !ok || id < 0 {
				prev := int32(-1)
				if ok {
					prev = head[k]
				}
				id = int32(len(distinct))
				head[k] = id
				next = append(next, prev)
				distinct = append(distinct, xattrRef{in, int32(j)})
				count = append(count, 0)
			}
			count[id]++
			flat = append(flat, id)
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
