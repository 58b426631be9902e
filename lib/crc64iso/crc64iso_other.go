//go:build !amd64 || purego

package crc64iso

var haveCLMUL = false

func update(crc uint64, p []byte) uint64 { return updateWords(crc, p) }
