//go:build amd64 && !purego

#include "textflag.h"

// See update in crc64iso_amd64.go for the algebra.
//
// X0-X3 are the four 16-byte lanes, X5 the pair of multipliers, X6 and
// X7 scratch. SI walks p, CX counts the bytes left.

// FOLD moves lane L on by the distance of the multipliers in X5: the
// product of its low quadword with X5's low one, XORed with that of the
// high quadwords, XORed with the 16 bytes at NEXT.
#define FOLD(L, NEXT) \
	MOVO      L, X6; \
	PCLMULQDQ $0x00, X5, L; \
	PCLMULQDQ $0x11, X5, X6; \
	PXOR      X6, L; \
	PXOR      NEXT, L

// func foldCLMUL(reg uint64, p []byte, acc *[16]byte, k *foldConsts)
TEXT ·foldCLMUL(SB), NOSPLIT, $0-48
	MOVQ reg+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX
	MOVQ acc+32(FP), DI
	MOVQ k+40(FP), DX

	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVQ  AX, X4
	PXOR  X4, X0
	ADDQ  $64, SI
	SUBQ  $64, CX
	MOVOU 0(DX), X5

loop:
	TESTQ CX, CX
	JZ    reduce
	MOVOU 0(SI), X7
	FOLD(X0, X7)
	MOVOU 16(SI), X7
	FOLD(X1, X7)
	MOVOU 32(SI), X7
	FOLD(X2, X7)
	MOVOU 48(SI), X7
	FOLD(X3, X7)
	ADDQ  $64, SI
	SUBQ  $64, CX
	JMP   loop

reduce:
	MOVOU 16(DX), X5
	FOLD(X0, X1)
	FOLD(X0, X2)
	FOLD(X0, X3)
	MOVOU X0, 0(DI)
	RET
