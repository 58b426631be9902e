package ostree

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// ValidChecksum reports whether s is a 64-digit lowercase hex sha256, the
// only spelling ostree uses in object names and refs.
func ValidChecksum(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checksumBytes(s string) ([]byte, error) {
	if !ValidChecksum(s) {
		return nil, fmt.Errorf("invalid checksum %q", s)
	}
	return hex.DecodeString(s)
}

// MetadataChecksum names a dirtree, dirmeta or commit object: the sha256
// of its serialized bytes.
func MetadataChecksum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ContentChecksum is what `ostree show` prints as ContentChecksum: it
// names the tree regardless of commit metadata and timestamp.
func ContentChecksum(rootTree, rootMeta string) (string, error) {
	t, err := checksumBytes(rootTree)
	if err != nil {
		return "", err
	}
	m, err := checksumBytes(rootMeta)
	if err != nil {
		return "", err
	}
	return MetadataChecksum(append(t, m...)), nil
}

// newContentHash starts a file object checksum: the header GVariant,
// prefixed (as ostree's variant_to_lenprefixed_buffer does) with its
// big-endian length and four zero bytes that 8-align it. The content, if
// any, is written after.
func newContentHash(header []byte) hash.Hash {
	h := sha256.New()
	h.Write(lengthPrefixed(header))
	return h
}

func lengthPrefixed(header []byte) []byte {
	b := make([]byte, 8, 8+len(header))
	binary.BigEndian.PutUint32(b[:4], uint32(len(header)))
	return append(b, header...)
}

// ContentPrefix is what the content checksum of a regular file with
// metadata m hashes before the bytes: SHA-256 of it followed by the
// content is the file object's checksum. A writer that reads the bytes
// for another reason can compute the checksum in the same pass.
func ContentPrefix(m FileMeta) ([]byte, error) {
	header, err := fileHeader(m, "", false)
	if err != nil {
		return nil, err
	}
	return lengthPrefixed(header), nil
}

// FileChecksum is the content checksum of a regular file with metadata m
// whose bytes are read from content.
func FileChecksum(m FileMeta, content io.Reader) (string, error) {
	header, err := fileHeader(m, "", false)
	if err != nil {
		return "", err
	}
	h := newContentHash(header)
	if _, err := io.Copy(h, content); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SymlinkChecksum is the content checksum of a symlink; it covers the
// header alone.
func SymlinkChecksum(m FileMeta, target string) (string, error) {
	header, err := fileHeader(m, target, true)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(newContentHash(header).Sum(nil)), nil
}

// NewFileHash starts the content checksum of a regular file object with
// metadata m: write the content to it, and its hex sum is the checksum.
// For a checker that reads the bytes for another purpose anyway.
func NewFileHash(m FileMeta) (hash.Hash, error) {
	header, err := fileHeader(m, "", false)
	if err != nil {
		return nil, err
	}
	return newContentHash(header), nil
}
