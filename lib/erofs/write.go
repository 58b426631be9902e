package erofs

import (
	"encoding/binary"
	"fmt"
	"io"
	"unsafe"
)

// Options select the composefs format version. mkcomposefs's defaults are
// Version 0, MaxVersion 1 (version 1 only when the tree has a whiteout);
// composefs-rs V1 and bootc use Version 1.
type Options struct {
	Version    int
	MaxVersion int
}

// V1 is the format bootc seals: mkcomposefs --min-version=1.
var V1 = Options{Version: 1, MaxVersion: 1}

// Write writes the composefs image of the tree under root to w. The tree is
// not modified. The output is a pure function of the tree and opts.
func Write(w io.Writer, root *Node, opts Options) error {
	if opts.Version < 0 || opts.Version > 1 || opts.MaxVersion > 1 {
		return fmt.Errorf("erofs: unsupported composefs version %d (max %d)", opts.Version, opts.MaxVersion)
	}
	version := effectiveVersion(root, opts)
	r, count, err := buildInodes(root, version)
	if err != nil {
		return err
	}
	return emitImage(w, r, version, count)
}

// emitImage lays out the inodes under r, about count of them, and writes
// the image to w.
func emitImage(w io.Writer, r *inode, version int, count int) error {
	img := layout(r, version, count)
	if err := img.check(); err != nil {
		return err
	}
	e := newEmitter(w)
	img.emit(e)
	e.flush()
	return e.err
}

// check rejects trees the format cannot hold.
func (img *image) check() error {
	if img.dataStart/BlockSize+img.dataBlocks > 0xFFFFFFFF {
		return fmt.Errorf("erofs: image too large")
	}
	if in := img.tooManyXattrs; in != nil {
		return fmt.Errorf("erofs: inode %d: too many xattrs", in.ino)
	}
	return nil
}

func icount[T uint32 | uint64](xattrSize T) T {
	if xattrSize == 0 {
		return 0
	}
	return (xattrSize-xattrHdrSize)/4 + 1
}

// emitter collects the image in a buffer of its own and hands it to the
// writer in large pieces: the image is made of a dozen small writes per
// inode, which through a bufio.Writer cost more than making them.
type emitter struct {
	w   io.Writer
	b   []byte // not yet written to w
	n   uint64 // bytes emitted, written or not
	err error
	buf [64]byte
	// value holds the placeholder xattr value being written.
	value []byte
}

// emitChunk is the size from which the emitter's buffer goes to the
// writer.
const emitChunk = 256 << 10

func newEmitter(w io.Writer) *emitter {
	return &emitter{w: w, b: make([]byte, 0, emitChunk+BlockSize)}
}

func (e *emitter) write(p []byte) {
	e.b = append(e.b, p...)
	e.n += uint64(len(p))
	if len(e.b) >= emitChunk {
		e.flush()
	}
}

func (e *emitter) writeString(s string) {
	e.b = append(e.b, s...)
	e.n += uint64(len(s))
	if len(e.b) >= emitChunk {
		e.flush()
	}
}

// flush writes the buffer out; after an error nothing more is written.
func (e *emitter) flush() {
	if e.err == nil && len(e.b) > 0 {
		_, e.err = e.w.Write(e.b)
	}
	e.b = e.b[:0]
}

var zeros [BlockSize]byte

// pad writes n bytes of fill, 0 or 0xff (the holes of a chunk map).
func (e *emitter) pad(n uint64, fill byte) {
	src := zeros[:]
	if fill == 0xff {
		src = holes[:]
	}
	for n > 0 {
		k := min(n, BlockSize)
		e.write(src[:k])
		n -= k
	}
}

var holes = func() (b [BlockSize]byte) {
	for i := range b {
		b[i] = 0xff
	}
	return
}()

func (e *emitter) align(a uint64) { e.pad(roundUp(e.n, a)-e.n, 0) }

func (img *image) emit(e *emitter) {
	le := binary.LittleEndian
	var hdr [32]byte
	le.PutUint32(hdr[0:], composefsMagic)
	le.PutUint32(hdr[4:], composefsVersion)
	if img.hasACL {
		le.PutUint32(hdr[8:], headerFlagHasACL)
	}
	le.PutUint32(hdr[12:], uint32(img.version))
	e.write(hdr[:])
	e.pad(superOffset-32, 0)

	var sb [superSize]byte
	le.PutUint32(sb[0:], erofsMagic)
	le.PutUint32(sb[8:], featureCompat)
	sb[12] = blockBits
	le.PutUint16(sb[14:], uint16(img.inodes[0].nid))
	le.PutUint64(sb[16:], uint64(len(img.inodes)))
	le.PutUint64(sb[24:], uint64(img.minSec))
	le.PutUint32(sb[32:], img.minNsec)
	le.PutUint32(sb[36:], uint32(img.dataStart/BlockSize+img.dataBlocks))
	le.PutUint32(sb[44:], uint32(img.inodesEnd/BlockSize))
	e.write(sb[:])

	for _, in := range img.inodes {
		img.emitInode(e, in)
	}
	e.align(slotSize)
	for _, x := range img.shared {
		emitXattr(e, x)
	}
	e.align(BlockSize)
	for _, in := range img.inodes {
		emitDataBlocks(e, in)
	}
}

func (img *image) emitInode(e *emitter, in *inode) {
	le := binary.LittleEndian
	e.pad(uint64(in.ipad), 0)
	layout := uint16(layoutFlatPlain)
	if in.tail > 0 {
		layout = layoutFlatInline
	}
	var size uint64
	var iu uint32
	var chunkFormat uint16
	chunkCount := uint64(0)
	switch in.typ() {
	case TypeDir:
		size = uint64(in.nb)*BlockSize + uint64(in.tail)
	case TypeRegular:
		size = in.stSize
		if in.external {
			bits, count := chunking(in.stSize)
			layout = layoutChunkBased
			chunkFormat = uint16(bits - blockBits)
			chunkCount = count
		}
	case TypeSymlink:
		size = in.stSize
		if in.nb == 0 {
			size = uint64(in.tail)
		}
	case TypeChar, TypeBlock:
		iu = in.rdev
	}
	switch in.typ() {
	case TypeDir, TypeRegular, TypeSymlink:
		if in.nb > 0 {
			iu = in.blkaddr
		}
		if layout == layoutChunkBased {
			// i_u is a union: the chunk format overlays the low half of
			// the block address, a quirk the format has to keep.
			iu = iu&0xFFFF0000 | uint32(chunkFormat)
		}
	}
	b := e.buf[:]
	clear(b)
	if in.compact {
		le.PutUint16(b[0:], layout<<1)
		le.PutUint16(b[2:], uint16(icount(in.xattrSize)))
		le.PutUint16(b[4:], uint16(in.mode))
		le.PutUint16(b[6:], uint16(in.nlink))
		le.PutUint32(b[8:], uint32(size))
		le.PutUint32(b[16:], iu)
		le.PutUint32(b[20:], in.ino)
		le.PutUint16(b[24:], uint16(in.uid))
		le.PutUint16(b[26:], uint16(in.gid))
		e.write(b[:compactSize])
	} else {
		le.PutUint16(b[0:], layout<<1|1)
		le.PutUint16(b[2:], uint16(icount(in.xattrSize)))
		le.PutUint16(b[4:], uint16(in.mode))
		le.PutUint64(b[8:], size)
		le.PutUint32(b[16:], iu)
		le.PutUint32(b[20:], in.ino)
		le.PutUint32(b[24:], in.uid)
		le.PutUint32(b[28:], in.gid)
		le.PutUint64(b[32:], uint64(in.mtimeSec))
		le.PutUint32(b[40:], in.mtimeNsec)
		le.PutUint32(b[44:], in.nlink)
		e.write(b[:extendedSize])
	}
	if in.xattrSize > 0 {
		img.emitXattrBody(e, in)
	}
	switch in.typ() {
	case TypeDir:
		if in.tail > 0 {
			_, last, _ := dirGroups(in.dirents)
			emitDirents(e, in.dirents[last:])
		}
	case TypeSymlink:
		if in.nb == 0 {
			e.write(in.data)
		}
	case TypeRegular:
		if in.tail > 0 {
			if in.external {
				e.pad(chunkCount*4, 0xff)
			} else {
				e.write(in.data[in.stSize-uint64(in.tail):])
			}
		}
	}
}

func (img *image) emitXattrBody(e *emitter, in *inode) {
	le := binary.LittleEndian
	filter := filterVirtual
	if !in.staticX || &in.xattrs[0] != &xattrsVirtual[0] {
		filter = xattrFilter(in.xattrs)
	}
	nShared := 0
	for i := range in.xattrs {
		if img.sharedOff(in, i) >= 0 {
			nShared++
		}
	}
	// Headers are made in e.buf: a local array would escape (the
	// bufio.Writer may pass it on) and cost an allocation each.
	h := e.buf[:xattrHdrSize]
	clear(h)
	le.PutUint32(h[0:], ^filter)
	h[4] = byte(nShared)
	e.write(h)
	for i := range in.xattrs {
		if o := img.sharedOff(in, i); o >= 0 {
			id := e.buf[:4]
			le.PutUint32(id, uint32((img.inodesEnd%BlockSize+uint64(o))/4))
			e.write(id)
		}
	}
	for i, x := range in.xattrs {
		if img.sharedOff(in, i) < 0 {
			if in.virtual(&x) != 0 {
				e.value = in.xattrValue(&x, e.value)
				x.Value = e.value
			}
			emitXattr(e, x)
		}
	}
}

// xattrFilter is the bloom filter of the names of xs, before its
// inversion in the xattr header.
func xattrFilter(xs []Xattr) uint32 {
	var filter uint32
	for _, x := range xs {
		idx, suffix := xattrIndex(x.Name)
		filter |= 1 << (xxh32(unsafe.Slice(unsafe.StringData(suffix), len(suffix)), xattrFilterSeed+uint32(idx)) & 31)
	}
	return filter
}

func emitXattr(e *emitter, x Xattr) {
	idx, suffix := xattrIndex(x.Name)
	h := e.buf[:4]
	h[0] = byte(len(suffix))
	h[1] = idx
	binary.LittleEndian.PutUint16(h[2:], uint16(len(x.Value)))
	e.write(h)
	e.writeString(suffix)
	e.write(x.Value)
	e.align(4)
}

// emitDirents writes one block (or inline tail) of directory entries: the
// fixed-size records, then the names without terminators.
func emitDirents(e *emitter, d []dirent) {
	le := binary.LittleEndian
	nameoff := uint16(len(d) * direntSize)
	rec := e.buf[:direntSize]
	for _, de := range d {
		le.PutUint64(rec[0:], de.target.nid)
		le.PutUint16(rec[8:], nameoff)
		rec[10] = fileType(de.target.mode)
		rec[11] = 0
		e.write(rec)
		nameoff += uint16(len(de.name))
	}
	for _, de := range d {
		e.writeString(de.name)
	}
}

func emitDataBlocks(e *emitter, in *inode) {
	switch in.typ() {
	case TypeDir:
		if in.nb == 0 {
			return
		}
		full, last, _ := dirGroups(in.dirents)
		start := 0
		for _, next := range full {
			emitDirents(e, in.dirents[start:next])
			e.align(BlockSize)
			start = next
		}
		if len(full) < int(in.nb) {
			emitDirents(e, in.dirents[last:])
			e.align(BlockSize)
		}
	case TypeRegular:
		if in.nb == 0 {
			return
		}
		if in.external {
			// A chunk map too big for the inode: one block of holes.
			e.pad(BlockSize, 0xff)
			return
		}
		for i := uint64(0); i < uint64(in.nb); i++ {
			end := min((i+1)*BlockSize, in.stSize)
			e.write(in.data[i*BlockSize : end])
			e.align(BlockSize)
		}
	case TypeSymlink:
		if in.nb > 0 {
			e.write(in.data)
			e.align(BlockSize)
		}
	}
}
