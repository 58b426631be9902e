package fsverity

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"sync"
)

// descriptorSize is the size of struct fsverity_descriptor; the file digest
// is the hash of this structure, not of the root hash alone, so that the
// file size and parameters are bound into it.
const descriptorSize = 256

// zeroBlock supplies the padding of partial blocks without copying them.
var zeroBlock [BlockSize]byte

// treeLevel is the unfinished block of one Merkle tree level: the hashes of
// the blocks below it that have not yet filled a whole block of their own.
type treeLevel struct {
	buf [BlockSize]byte
	n   int
}

// Hasher computes an fs-verity digest of everything written to it.
//
// It builds the Merkle tree bottom-up while data streams in and keeps only
// the one unfinished block of each tree level, so memory is O(tree depth)
// (at most about ten 4 KiB blocks, whatever the file size) and no tree is
// ever written anywhere. Full data blocks in a Write are hashed straight from
// the caller's slice; only a block split across Writes is copied.
//
// Hasher implements hash.Hash. It is not safe for concurrent use.
type Hasher struct {
	alg  Algorithm
	hash hash.Hash // reused for every block: a fresh one per block would allocate

	size    uint64          // bytes written so far: the descriptor's data_size
	pending [BlockSize]byte // data block that the Writes so far have only partly filled
	npend   int

	// levels[0] collects data block hashes, levels[i+1] the hashes of full
	// levels[i] blocks. A level is appended only when the one below it
	// fills a block, so len(levels) tells whether a higher level exists.
	levels []*treeLevel

	// Scratch space for Sum. It lives here rather than on Sum's stack
	// because slices passed to hash.Hash methods escape, which would cost
	// allocations for every file digested.
	root       [maxDigestSize]byte
	carry      [maxDigestSize]byte
	descriptor [descriptorSize]byte
	sums4      [4][64]byte // addBlocks4's four hashes, kept off the stack likewise
}

// New returns a Hasher for alg. It panics if alg is not SHA256 or SHA512:
// algorithms come from the constants or from ParseAlgorithm, so anything else
// is a programming error.
func New(alg Algorithm) *Hasher {
	h := &Hasher{alg: alg}
	switch alg {
	case SHA256:
		h.hash = sha256.New()
	case SHA512:
		h.hash = sha512.New()
	default:
		panic("fsverity.New: invalid " + alg.String())
	}
	return h
}

// pools keep Hashers for Get, one pool per algorithm (indexed by its
// number). A Hasher is about 5 KiB, plus 4 KiB per tree level and its
// block hash: a writer that makes one per object, as a pull does for
// each of 100k files, otherwise allocates about a gigabyte, most of it
// zeroed, for the garbage collector to trace and sweep.
var pools [SHA512 + 1]sync.Pool

// Get is New(alg), reusing a Hasher that Put gave back when there is
// one. It panics on an invalid alg, as New does.
func Get(alg Algorithm) *Hasher {
	if alg == SHA256 || alg == SHA512 {
		if h, ok := pools[alg].Get().(*Hasher); ok {
			return h
		}
	}
	return New(alg)
}

// Put resets h and keeps it for a later Get. The caller must not use h
// (or a slice Sum returned into h's own storage: Sum never does that)
// afterwards.
func Put(h *Hasher) {
	h.Reset()
	pools[h.alg].Put(h)
}

// Algorithm is the hash algorithm h was made with.
func (h *Hasher) Algorithm() Algorithm { return h.alg }

// Size is the digest length, as hash.Hash requires.
func (h *Hasher) Size() int { return h.alg.Size() }

// BlockSize is the Merkle tree block size; writes in multiples of it, from
// an aligned start, are hashed without copying.
func (h *Hasher) BlockSize() int { return BlockSize }

// Reset forgets everything written, keeping the allocated level buffers for
// the next file.
func (h *Hasher) Reset() {
	h.size = 0
	h.npend = 0
	for _, l := range h.levels {
		l.n = 0
	}
	h.levels = h.levels[:0]
}

// Write adds p to the file being hashed. It never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	written := len(p)
	h.size += uint64(written)
	if h.npend > 0 {
		c := copy(h.pending[h.npend:], p)
		h.npend += c
		p = p[c:]
		if h.npend < BlockSize {
			return written, nil
		}
		h.addBlock(h.pending[:])
		h.npend = 0
	}
	if h.alg == SHA512 && haveSHA512x4 {
		p = h.addBlocks4(p)
	}
	for len(p) >= BlockSize {
		h.addBlock(p[:BlockSize])
		p = p[BlockSize:]
	}
	h.npend = copy(h.pending[:], p)
	return written, nil
}

// addBlocks4 hashes the full data blocks at the start of p four at a time
// with the four-lane SHA-512 and returns what is left: at most two full
// blocks and a partial one. fs-verity's leaves are independent messages of
// one fixed length, the best case for hashing several in one pass; see
// sha512x4_amd64.s. Three blocks are hashed together with a fourth, unused
// lane, which costs less than three one-lane hashes.
func (h *Hasher) addBlocks4(p []byte) []byte {
	for len(p) >= 3*BlockSize {
		blocks := [4][]byte{p, p[BlockSize:], p[2*BlockSize:], p[2*BlockSize:]}
		n := 3
		if len(p) >= 4*BlockSize {
			blocks[3] = p[3*BlockSize:]
			n = 4
		}
		sum4SHA512(&h.sums4, &blocks)
		for i := range n {
			l := h.level(0)
			copy(l.buf[l.n:], h.sums4[i][:])
			h.carryUp(0)
		}
		p = p[n*BlockSize:]
	}
	return p
}

// addBlock hashes one full data block into level 0 and carries every level
// that this fills up into the next.
func (h *Hasher) addBlock(block []byte) {
	l := h.level(0)
	h.hash.Reset()
	h.hash.Write(block)
	h.hash.Sum(l.buf[l.n:l.n]) // appends in place: capacity is left for ds bytes
	h.carryUp(0)
}

// carryUp accounts for the hash just placed at the end of level lvl and, for
// every level this fills, hashes the full block into the level above.
func (h *Hasher) carryUp(lvl int) {
	ds := h.alg.Size()
	for {
		l := h.levels[lvl]
		l.n += ds
		if l.n < BlockSize {
			return
		}
		// The level's block is complete: hash it into the next level. Its
		// buffer can be marked empty already, since nothing writes to it
		// again until that hash is taken.
		l.n = 0
		lvl++
		next := h.level(lvl)
		h.hash.Reset()
		h.hash.Write(l.buf[:])
		h.hash.Sum(next.buf[next.n:next.n])
	}
}

// level returns tree level lvl, adding it (and reusing a buffer that Reset
// kept) if lvl is one past the highest level so far.
func (h *Hasher) level(lvl int) *treeLevel {
	if lvl == len(h.levels) {
		// Reslicing first reuses a buffer that Reset kept; append's
		// spare capacity holds nils, which get a new buffer.
		if lvl < cap(h.levels) {
			h.levels = h.levels[:lvl+1]
		} else {
			h.levels = append(h.levels, nil)
		}
		if h.levels[lvl] == nil {
			h.levels[lvl] = new(treeLevel)
		}
	}
	return h.levels[lvl]
}

// Sum appends the fs-verity digest of the data written so far to b.
//
// Sum does not change h: the unfinished blocks are padded and hashed on the
// fly, not flushed, so Write may continue afterwards and a later Sum covers
// all of the data. It costs O(tree depth) block hashes.
func (h *Hasher) Sum(b []byte) []byte {
	root := h.root[:h.alg.Size()]
	h.rootHash(root)

	d := &h.descriptor // struct fsverity_descriptor, little-endian
	clear(d[:])
	d[0] = 1             // version
	d[1] = byte(h.alg)   // hash_algorithm
	d[2] = log2BlockSize // log_blocksize
	d[3] = 0             // salt_size; bytes 4..7 (sig_size) stay 0
	binary.LittleEndian.PutUint64(d[8:16], h.size)
	copy(d[16:16+maxDigestSize], root) // root_hash, zero-padded; salt[32] and reserved[144] stay zero

	h.hash.Reset()
	h.hash.Write(d[:])
	return h.hash.Sum(b)
}

// rootHash writes the Merkle tree root into root (len = Size) without
// modifying the levels: each unfinished block is hashed as if zero-padded,
// with the hash carried up from the level below appended virtually.
func (h *Hasher) rootHash(root []byte) {
	ds := h.alg.Size()
	if h.size == 0 {
		// No tree at all; fs-verity defines the root as zeros.
		clear(root[:ds])
		return
	}
	carry := &h.carry
	carrying := false
	if h.npend > 0 {
		h.hashPadded(carry[:0], h.pending[:h.npend], nil)
		carrying = true
	}
	for lvl := 0; ; lvl++ {
		var part []byte // the level's unfinished block, before any carry
		if lvl < len(h.levels) {
			l := h.levels[lvl]
			part = l.buf[:l.n]
		}
		var extra []byte
		if carrying {
			extra = carry[:ds]
		}
		higherExists := lvl+1 < len(h.levels)
		if !higherExists && len(part)+len(extra) == ds {
			// A single hash with nothing above it is the root. This is also
			// why a one-block file's root is just that block's hash.
			copy(root, part)
			copy(root[len(part):], extra)
			return
		}
		if len(part)+len(extra) == 0 {
			// Everything at this level went up in full blocks already.
			carrying = false
			continue
		}
		h.hashPadded(carry[:0], part, extra)
		carrying = true
	}
}

// hashPadded appends to dst the hash of a||b zero-padded to one block.
func (h *Hasher) hashPadded(dst, a, b []byte) {
	h.hash.Reset()
	h.hash.Write(a)
	h.hash.Write(b)
	h.hash.Write(zeroBlock[:BlockSize-len(a)-len(b)])
	h.hash.Sum(dst)
}
