//go:build amd64 && !purego

package crc64iso

import (
	"math/bits"

	"golang.org/x/sys/cpu"
)

// haveCLMUL tells whether foldCLMUL can run here (PCLMULQDQ; the rest is
// SSE2, which every amd64 has). Tests switch it off to cover the word
// loop alone.
var haveCLMUL = cpu.X86.HasPCLMULQDQ

// foldCLMUL folds p (len a multiple of 64, at least 64) into acc, 16
// bytes whose CRC with a zero register equals the CRC of p with register
// reg. See update.
//
//go:noescape
func foldCLMUL(reg uint64, p []byte, acc *[16]byte, k *foldConsts)

// foldConsts are the multipliers of the folds, each x^n mod P in the
// reflected representation (see update): k512 folds a 16-byte lane of
// the four-lane loop across 64 bytes, k128 one lane into the next.
type foldConsts struct {
	k512 [2]uint64 // x^(512+63), x^(512-1)
	k128 [2]uint64 // x^(128+63), x^(128-1)
}

var consts = foldConsts{
	k512: [2]uint64{xPowMod(512 + 63), xPowMod(512 - 1)},
	k128: [2]uint64{xPowMod(128 + 63), xPowMod(128 - 1)},
}

// xPowMod is x^n mod P, reflected: bit j is the coefficient of x^(63-j).
func xPowMod(n int) uint64 {
	v := uint64(1) // bit i is the coefficient of x^i
	for range n {
		carry := v >> 63
		v <<= 1
		if carry != 0 {
			v ^= 0x1b // x^64 = x^4 + x^3 + x + 1 mod P
		}
	}
	return bits.Reverse64(v)
}

// update is Update with the bulk of p folded by carry-less multiplication
// (PCLMULQDQ), 64 bytes per step in four independent lanes, as in Intel's
// "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ".
//
// A reflected CRC reads a little-endian word so that bit j of the word is
// the coefficient of x^(63-j): a message of 16 bytes is a polynomial of
// degree < 128 whose first 8 bytes (the low quadword) are the high half.
// The CRC with a zero register is M(x)·x^64 mod P, so any two messages
// congruent mod P that end at the same place have the same CRC: the loop
// keeps four 16-byte lanes A congruent to what they have absorbed, and
// moving a lane 64 bytes on is A·x^512 + next, where A·x^512 =
// hi(A)·x^576 + lo(A)·x^512 ≡ hi(A)·(x^575 mod P)·x + lo(A)·(x^511 mod
// P)·x. A carry-less product of two reflected 64-bit values is the
// reflected 128-bit product times x (bit k is the coefficient of
// x^(126-k)), which is why the constants are one power lower. The
// register goes into the first word, as the word loop XORs it in. The
// four lanes end folded into one by the same rule with 128 bits, whose
// 16 bytes the word loop finishes.
func update(crc uint64, p []byte) uint64 {
	if haveCLMUL && len(p) >= 64 {
		n := len(p) &^ 63
		var acc [16]byte
		foldCLMUL(^crc, p[:n], &acc, &consts)
		crc = updateWords(^uint64(0), acc[:])
		p = p[n:]
	}
	return updateWords(crc, p)
}
