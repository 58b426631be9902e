//go:build amd64 && !purego

package fsverity

import (
	"encoding/binary"
	"math/bits"

	"golang.org/x/sys/cpu"
)

// haveSHA512x4 tells whether sha512x4 can run here: it needs AVX2 for the
// four 64-bit lanes of the YMM registers. Tests switch it off to cover the
// one-block-at-a-time path on machines that have AVX2.
var haveSHA512x4 = cpu.X86.HasAVX2

// sha512x4Blocks hashes four whole 4096-byte blocks with SHA-512, one in
// each lane of the vector registers, and writes lane i's state words, word
// j at state[j][i], in host order (see sum4SHA512 for the bytes).
//
//go:noescape
func sha512x4Blocks(state *[8][4]uint64, p0, p1, p2, p3 *byte)

// sha512x4K is the SHA-512 round constant table with every constant
// repeated once per lane, so that a round adds it with one vector load.
var sha512x4K [80][4]uint64

// sha512x4PadW is the message schedule of the last SHA-512 block of every
// 4096-byte message, per lane. That block never changes (0x80, zeros, and
// the bit length 32768), so its schedule is worked out once here and the
// assembly only runs its rounds.
var sha512x4PadW [80][4]uint64

// sha512x4IV is the SHA-512 initial state, per lane.
var sha512x4IV [8][4]uint64

func init() {
	var w [80]uint64
	w[0] = 0x80 << 56
	w[15] = BlockSize * 8
	for t := 16; t < 80; t++ {
		w[t] = sigma1(w[t-2]) + w[t-7] + sigma0(w[t-15]) + w[t-16]
	}
	for t := range 80 {
		for lane := range 4 {
			sha512x4K[t][lane] = sha512K[t]
			sha512x4PadW[t][lane] = w[t]
		}
	}
	for j := range 8 {
		for lane := range 4 {
			sha512x4IV[j][lane] = sha512IV[j]
		}
	}
}

// sum4SHA512 writes to out[i] the SHA-512 hash of the 4096 bytes at
// blocks[i]. Each blocks[i] must hold at least BlockSize bytes.
func sum4SHA512(out *[4][64]byte, blocks *[4][]byte) {
	var state [8][4]uint64
	for i := range blocks {
		_ = blocks[i][BlockSize-1] // the assembly reads BlockSize bytes from each
	}
	sha512x4Blocks(&state, &blocks[0][0], &blocks[1][0], &blocks[2][0], &blocks[3][0])
	for lane := range 4 {
		for j := range 8 {
			binary.BigEndian.PutUint64(out[lane][8*j:], state[j][lane])
		}
	}
}

func sigma0(x uint64) uint64 { return bits.RotateLeft64(x, -1) ^ bits.RotateLeft64(x, -8) ^ x>>7 }
func sigma1(x uint64) uint64 { return bits.RotateLeft64(x, -19) ^ bits.RotateLeft64(x, -61) ^ x>>6 }

// sha512IV and sha512K are the initial hash value and round constants of
// FIPS 180-4, sections 5.3.5 and 4.2.3.
var sha512IV = [8]uint64{
	0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
	0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
}

var sha512K = [80]uint64{
	0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
	0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
	0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
	0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
	0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
	0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
	0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
	0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
	0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
	0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
	0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
	0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
	0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
	0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
	0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
	0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
	0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
	0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
	0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
	0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
}
