//go:build amd64 && !purego

#include "textflag.h"

// SHA-512 of four 4096-byte messages at once, written by hand.
//
// Every 64-bit lane of a YMM register belongs to one message, so one pass
// over the 80 rounds advances all four hashes; the instructions are those of
// a one-message implementation with scalar operations replaced by their
// four-lane AVX2 forms (AVX2 has no 64-bit rotate, so each rotate is two
// shifts, folded into the XOR trees of the sigma functions).
//
// Registers: Y0-Y7 hold the working variables a-h (the round macro is
// called with them renamed instead of moving them), Y8-Y11 are scratch,
// Y12/Y13 carry a^b of one round as b^c of the next (Maj needs both).
// R10-R13 walk the four messages, R9 the message schedule, R8 the round
// constants, CX counts the 33 blocks (32 of data, then the constant padding
// block), DX the groups of eight rounds.
//
// Frame: W[0..79] per lane at 0(SP) (80*32 bytes), then the state at the
// start of the block at 2560(SP), added back after its 80 rounds.

#define SAVED 2560

// bswapMask reverses the bytes of each 64-bit lane (SHA-512 is big-endian).
DATA bswapMask<>+0x00(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x08(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x10(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x18(SB)/8, $0x08090a0b0c0d0e0f
GLOBL bswapMask<>(SB), RODATA|NOPTR, $32

// rotr8Mask rotates each 64-bit lane right by 8 bits in one byte shuffle.
DATA rotr8Mask<>+0x00(SB)/8, $0x0007060504030201
DATA rotr8Mask<>+0x08(SB)/8, $0x080f0e0d0c0b0a09
DATA rotr8Mask<>+0x10(SB)/8, $0x0007060504030201
DATA rotr8Mask<>+0x18(SB)/8, $0x080f0e0d0c0b0a09
GLOBL rotr8Mask<>(SB), RODATA|NOPTR, $32

// LOADW transposes the 32 bytes at off of each message into W[off/8 ..
// off/8+3]: four loads give one row per message, the unpacks and lane
// permutes turn rows into columns, the shuffle makes them big-endian.
#define LOADW(off) \
	VMOVDQU off(R10), Y8; \
	VMOVDQU off(R11), Y9; \
	VMOVDQU off(R12), Y10; \
	VMOVDQU off(R13), Y11; \
	VPUNPCKLQDQ Y9, Y8, Y12; \
	VPUNPCKHQDQ Y9, Y8, Y13; \
	VPUNPCKLQDQ Y11, Y10, Y8; \
	VPUNPCKHQDQ Y11, Y10, Y9; \
	VPERM2I128 $0x20, Y8, Y12, Y10; \
	VPERM2I128 $0x31, Y8, Y12, Y11; \
	VPERM2I128 $0x20, Y9, Y13, Y12; \
	VPERM2I128 $0x31, Y9, Y13, Y13; \
	VPSHUFB bswapMask<>(SB), Y10, Y10; \
	VPSHUFB bswapMask<>(SB), Y12, Y12; \
	VPSHUFB bswapMask<>(SB), Y11, Y11; \
	VPSHUFB bswapMask<>(SB), Y13, Y13; \
	VMOVDQU Y10, (off*4)(SP); \
	VMOVDQU Y12, (off*4+32)(SP); \
	VMOVDQU Y11, (off*4+64)(SP); \
	VMOVDQU Y13, (off*4+96)(SP)

// ROTR3 leaves ROTR(x, r1) ^ ROTR(x, r2) ^ ROTR(x, r3) in Y8, using Y9 and
// Y10 (AVX2 has no 64-bit rotate: each is a right and a left shift).
#define ROTR3(x, r1, r2, r3) \
	VPSRLQ $(r1), x, Y8; \
	VPSLLQ $(64-r1), x, Y9; \
	VPSRLQ $(r2), x, Y10; \
	VPXOR Y9, Y8, Y8; \
	VPSLLQ $(64-r2), x, Y9; \
	VPXOR Y10, Y8, Y8; \
	VPSRLQ $(r3), x, Y10; \
	VPXOR Y9, Y8, Y8; \
	VPSLLQ $(64-r3), x, Y9; \
	VPXOR Y10, Y8, Y8; \
	VPXOR Y9, Y8, Y8

#define SIGMA1(e) ROTR3(e, 14, 18, 41)
#define SIGMA0(a) ROTR3(a, 28, 34, 39)

// ROUND is round idx (0-7) of the group that R8/R9 point at. It leaves
// T1 + T2 (the next a) in h and d + T1 (the next e) in d. ab receives a^b;
// bc must hold b^c. Ch(e,f,g) = ((f^g)&e)^g, Maj(a,b,c) = ((a^b)&(b^c))^b.
#define ROUND(a, b, c, d, e, f, g, h, ab, bc, idx) \
	VPADDQ (idx*32)(R9), h, h; \
	VPADDQ (idx*32)(R8), h, h; \
	SIGMA1(e); \
	VPADDQ Y8, h, h; \
	VPXOR g, f, Y11; \
	VPAND e, Y11, Y11; \
	VPXOR g, Y11, Y11; \
	VPADDQ Y11, h, h; \
	VPADDQ h, d, d; \
	SIGMA0(a); \
	VPADDQ Y8, h, h; \
	VPXOR b, a, ab; \
	VPAND bc, ab, Y11; \
	VPXOR b, Y11, Y11; \
	VPADDQ Y11, h, h

// func sha512x4Blocks(state *[8][4]uint64, p0, p1, p2, p3 *byte)
TEXT ·sha512x4Blocks(SB), 0, $2816-40
	MOVQ p0+8(FP), R10
	MOVQ p1+16(FP), R11
	MOVQ p2+24(FP), R12
	MOVQ p3+32(FP), R13
	LEAQ ·sha512x4IV(SB), AX
	VMOVDQU 0(AX), Y0
	VMOVDQU 32(AX), Y1
	VMOVDQU 64(AX), Y2
	VMOVDQU 96(AX), Y3
	VMOVDQU 128(AX), Y4
	VMOVDQU 160(AX), Y5
	VMOVDQU 192(AX), Y6
	VMOVDQU 224(AX), Y7
	MOVQ $33, CX

block:
	VMOVDQU Y0, (SAVED+0)(SP)
	VMOVDQU Y1, (SAVED+32)(SP)
	VMOVDQU Y2, (SAVED+64)(SP)
	VMOVDQU Y3, (SAVED+96)(SP)
	VMOVDQU Y4, (SAVED+128)(SP)
	VMOVDQU Y5, (SAVED+160)(SP)
	VMOVDQU Y6, (SAVED+192)(SP)
	VMOVDQU Y7, (SAVED+224)(SP)
	CMPQ CX, $1
	JEQ padding

	LOADW(0)
	LOADW(32)
	LOADW(64)
	LOADW(96)
	ADDQ $128, R10
	ADDQ $128, R11
	ADDQ $128, R12
	ADDQ $128, R13

	// W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16], R9 at W[t].
	LEAQ (16*32)(SP), R9
	MOVQ $64, DX

schedule:
	VMOVDQU (-2*32)(R9), Y8
	VPSRLQ $19, Y8, Y9
	VPSLLQ $45, Y8, Y10
	VPXOR Y10, Y9, Y9
	VPSRLQ $61, Y8, Y10
	VPXOR Y10, Y9, Y9
	VPSLLQ $3, Y8, Y10
	VPXOR Y10, Y9, Y9
	VPSRLQ $6, Y8, Y10
	VPXOR Y10, Y9, Y9
	VMOVDQU (-15*32)(R9), Y8
	VPSRLQ $1, Y8, Y11
	VPSLLQ $63, Y8, Y10
	VPXOR Y10, Y11, Y11
	VPSHUFB rotr8Mask<>(SB), Y8, Y10
	VPXOR Y10, Y11, Y11
	VPSRLQ $7, Y8, Y10
	VPXOR Y10, Y11, Y11
	VPADDQ Y11, Y9, Y9
	VPADDQ (-7*32)(R9), Y9, Y9
	VPADDQ (-16*32)(R9), Y9, Y9
	VMOVDQU Y9, (R9)
	ADDQ $32, R9
	DECQ DX
	JNZ schedule

	LEAQ 0(SP), R9
	JMP rounds

padding:
	LEAQ ·sha512x4PadW(SB), R9

rounds:
	LEAQ ·sha512x4K(SB), R8
	VPXOR Y2, Y1, Y13
	MOVQ $10, DX

eight:
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y12, Y13, 0)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y13, Y12, 1)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y12, Y13, 2)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y13, Y12, 3)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y12, Y13, 4)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y13, Y12, 5)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y12, Y13, 6)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y13, Y12, 7)
	ADDQ $256, R8
	ADDQ $256, R9
	DECQ DX
	JNZ eight

	VPADDQ (SAVED+0)(SP), Y0, Y0
	VPADDQ (SAVED+32)(SP), Y1, Y1
	VPADDQ (SAVED+64)(SP), Y2, Y2
	VPADDQ (SAVED+96)(SP), Y3, Y3
	VPADDQ (SAVED+128)(SP), Y4, Y4
	VPADDQ (SAVED+160)(SP), Y5, Y5
	VPADDQ (SAVED+192)(SP), Y6, Y6
	VPADDQ (SAVED+224)(SP), Y7, Y7
	DECQ CX
	JNZ block

	MOVQ state+0(FP), DI
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	VMOVDQU Y4, 128(DI)
	VMOVDQU Y5, 160(DI)
	VMOVDQU Y6, 192(DI)
	VMOVDQU Y7, 224(DI)
	VZEROUPPER
	RET
