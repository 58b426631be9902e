//go:build !amd64 || purego

package fsverity

// haveSHA512x4 is false where there is no four-lane SHA-512: every block is
// hashed on its own with crypto/sha512.
var haveSHA512x4 = false

func sum4SHA512(*[4][64]byte, *[4][]byte) { panic("fsverity: no four-lane SHA-512 on this platform") }
