// Package fsverity computes fs-verity file digests in userspace and drives the
// kernel's fs-verity ioctls.
//
// The digest is the one the kernel reports from FS_IOC_MEASURE_VERITY and the
// one `fsverity digest` prints, for the only parameters composefs uses:
// descriptor version 1, 4096-byte Merkle tree blocks and no salt. It names
// composefs objects and EROFS images, so it must match those tools bit for bit
// on every size, including the tree-shape edge cases (empty file, one block,
// exactly full hash blocks).
//
// Computing the digest never needs kernel support; enabling and measuring
// verity does, and many kernels and filesystems lack it (ErrUnavailable).
//
// The data blocks of a file are hashed as separate 4096-byte messages, all of
// one length and independent of each other, so on amd64 with AVX2 the SHA-512
// digest hashes them four at a time, one message in each 64-bit lane of the
// vector registers (sha512x4_amd64.s): SHA-512 has no instructions of its own
// there, and one lane-parallel pass costs about half as much as four scalar
// ones. The tree's upper levels, SHA-256 (which has SHA-NI) and files of fewer
// than three full blocks take the one-block-at-a-time path; both give the same
// bytes. DigestFiles hashes several small files held in memory together, the
// blocks of all of them as one list, so that those too fill the four lanes.
package fsverity

import (
	"fmt"
	"strings"
)

// BlockSize is the Merkle tree block size. composefs and bootc always use
// 4096, whatever the page or filesystem block size, so it is not a parameter.
const BlockSize = 4096

// log2BlockSize is the descriptor's log_blocksize field for BlockSize.
const log2BlockSize = 12

// maxDigestSize is the largest hash size fs-verity knows (SHA-512) and the
// size of the descriptor's root_hash field.
const maxDigestSize = 64

// Algorithm is an fs-verity hash algorithm, numbered as the kernel's
// FS_VERITY_HASH_ALG_* constants so that it can go into ioctl arguments and
// the descriptor unchanged.
type Algorithm uint8

const (
	SHA256 Algorithm = 1
	SHA512 Algorithm = 2
)

// Size is the length in bytes of a digest made with a, or 0 for an
// algorithm fs-verity does not define.
func (a Algorithm) Size() int {
	switch a {
	case SHA256:
		return 32
	case SHA512:
		return 64
	}
	return 0
}

// String gives the name `fsverity digest` prints before the colon, so that
// "<alg>:<hex>" strings round-trip with that tool and with ParseAlgorithm.
func (a Algorithm) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("fsverity.Algorithm(%d)", uint8(a))
}

func (a Algorithm) valid() bool { return a.Size() != 0 }

// ParseAlgorithm accepts the names String returns, in any letter case, as
// users type them on command lines and in config files.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(s) {
	case "sha256":
		return SHA256, nil
	case "sha512":
		return SHA512, nil
	}
	return 0, fmt.Errorf("unknown fs-verity hash algorithm %q (want sha256 or sha512)", s)
}
