package fsverity

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"sync"
)

// Most files of an OS image are a few blocks long, and a Hasher hashes
// those one block at a time: the four-lane SHA-512 needs four independent
// blocks, and a small file has fewer leaves than that, then one padded
// block of their hashes and the descriptor, each waiting for the one
// before. The blocks of different files, though, are independent of each
// other. DigestFiles therefore hashes the leaves of all its files as one
// list, four lanes at a time, then all their level-1 blocks the same way:
// on the benchmark image (most files under 16 KiB) the padded blocks
// alone were 4% of a pull's CPU, all of it on one lane.

// BatchMax is the largest file DigestFiles hashes together with others
// for alg: one whose leaf hashes fill at most one tree block, so that its
// tree has at most two levels. Larger files are hashed by a Hasher, as
// before, with the same result.
func BatchMax(alg Algorithm) int {
	if !alg.valid() {
		return 0
	}
	return BlockSize / alg.Size() * BlockSize
}

// blockJob is one tree block to hash: src holds exactly BlockSize bytes,
// its hash goes to dst.
type blockJob struct {
	src []byte
	dst []byte
}

// batcher is DigestFiles's scratch space, pooled: a pull calls it for
// nearly every object.
type batcher struct {
	tails  [][BlockSize]byte // zero-padded copies of partial last blocks
	level1 [][BlockSize]byte // each file's level-1 block
	roots  [][maxDigestSize]byte
	jobs   []blockJob
	sums4  [4][64]byte
	desc   [descriptorSize]byte
	sha256 hash.Hash
	sha512 hash.Hash
}

var batchers = sync.Pool{New: func() any {
	return &batcher{sha256: sha256.New(), sha512: sha512.New()}
}}

// DigestFiles returns the fs-verity digests of files, each held whole in
// memory, in order: the same digests as writing each to its own Hasher.
// Files up to BatchMax(alg) are hashed together (see above). It panics
// on an invalid alg, as New does.
func DigestFiles(alg Algorithm, files [][]byte) [][]byte {
	if !alg.valid() {
		panic("fsverity.DigestFiles: invalid " + alg.String())
	}
	ds := alg.Size()
	sums := make([][]byte, len(files))
	backing := make([]byte, len(files)*ds)
	b := batchers.Get().(*batcher)
	defer batchers.Put(b)
	b.grow(len(files))
	b.jobs = b.jobs[:0]
	limit := BatchMax(alg)
	for i, f := range files {
		sums[i] = backing[i*ds : (i+1)*ds : (i+1)*ds]
		root := b.roots[i][:ds]
		if len(f) > limit {
			continue // below, by a Hasher
		}
		if len(f) == 0 {
			clear(root) // no tree at all: the root is zeros
			continue
		}
		full := len(f) / BlockSize
		leaves := (len(f) + BlockSize - 1) / BlockSize
		level1 := b.level1[i][:]
		for k := range leaves {
			var src []byte
			if k < full {
				src = f[k*BlockSize : (k+1)*BlockSize]
			} else {
				tail := b.tails[i][:]
				clear(tail[copy(tail, f[k*BlockSize:]):])
				src = tail
			}
			dst := root // a one-block file's root is its block's hash
			if leaves > 1 {
				dst = level1[k*ds : (k+1)*ds]
			}
			b.jobs = append(b.jobs, blockJob{src, dst})
		}
		if leaves > 1 {
			clear(level1[leaves*ds:])
		}
	}
	b.run(alg)
	b.jobs = b.jobs[:0]
	for i, f := range files {
		if len(f) > BlockSize && len(f) <= limit {
			b.jobs = append(b.jobs, blockJob{b.level1[i][:], b.roots[i][:ds]})
		}
	}
	b.run(alg)
	h := b.sha512
	if alg == SHA256 {
		h = b.sha256
	}
	for i, f := range files {
		if len(f) > limit {
			fh := Get(alg)
			fh.Write(f)
			fh.Sum(sums[i][:0])
			Put(fh)
			continue
		}
		d := &b.desc // struct fsverity_descriptor, as in Hasher.Sum
		clear(d[:])
		d[0] = 1
		d[1] = byte(alg)
		d[2] = log2BlockSize
		binary.LittleEndian.PutUint64(d[8:16], uint64(len(f)))
		copy(d[16:16+maxDigestSize], b.roots[i][:ds])
		h.Reset()
		h.Write(d[:])
		h.Sum(sums[i][:0])
	}
	return sums
}

// grow makes room for n files.
func (b *batcher) grow(n int) {
	if len(b.tails) < n {
		b.tails = make([][BlockSize]byte, n)
		b.level1 = make([][BlockSize]byte, n)
		b.roots = make([][maxDigestSize]byte, n)
	}
}

// run hashes b.jobs: four at a time where the four-lane SHA-512 can,
// else (and for a last single block) one at a time.
func (b *batcher) run(alg Algorithm) {
	jobs := b.jobs
	if alg == SHA512 && haveSHA512x4 {
		for len(jobs) >= 2 {
			n := min(len(jobs), 4)
			// Two or three blocks fill the unused lanes with the last
			// one: a lane-parallel pass with idle lanes still costs less
			// than two one-lane hashes (BenchmarkSum4SHA512).
			var blocks [4][]byte
			for k := range 4 {
				blocks[k] = jobs[min(k, n-1)].src
			}
			sum4SHA512(&b.sums4, &blocks)
			for k := range n {
				copy(jobs[k].dst, b.sums4[k][:])
			}
			jobs = jobs[n:]
		}
	}
	h := b.sha512
	if alg == SHA256 {
		h = b.sha256
	}
	for _, j := range jobs {
		h.Reset()
		h.Write(j.src)
		h.Sum(j.dst[:0])
	}
}
