package composefs

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"

	"golang.org/x/sys/unix"
)

// Content records. A writer that hashes an object's bytes for another
// store in the same pass that gives the fs-verity digest can keep the
// result with the object, so that a later consumer of the repository's
// own object need not read the bytes again. A record is the SHA-256 of a
// prefix (the caller's, e.g. an ostree file header) followed by the
// object's bytes, stored with that prefix, so that anyone holding the
// bytes can recompute it (cfs-fsck does) and a reader finds the record by
// the exact prefix it would hash.
//
// Records live in an xattr of the trusted namespace on the object: only
// CAP_SYS_ADMIN can set or even read one, so an unprivileged process can
// neither forge a record nor see one, and the record goes wherever the
// object goes (garbage collection, replacement). FICLONE copies extents,
// never xattrs, so the stores that share an object's bytes do not get it.
// The name avoids trusted.overlay.*, which overlayfs interprets on the
// data-only lower layer.
//
// A record is only ever written from bytes this process hashed to the
// object's name in the same pass: on a new object before it is named, or
// on a pending one that the same bytes were written for again. An object
// named before this process started is never given a record, as its
// bytes are trusted by size only (CheckObject) and may have changed.

// RecordXattr is the xattr holding an object's content records.
const RecordXattr = "trusted.cfs.content-sha256"

// Record is SHA-256(Prefix || the object's bytes).
type Record struct {
	Prefix []byte
	Sum    [sha256.Size]byte
}

const (
	recordVersion = 1
	// MaxRecordPrefix bounds a prefix: an ostree file header with a few
	// xattrs is well under it, and the xattr stays small.
	MaxRecordPrefix = 1024
	// maxRecords is how many records an object keeps; a new one beyond
	// that replaces the oldest.
	maxRecords = 4
)

// EncodeRecords is the xattr value for records: a version byte, then each
// record as a big-endian uint16 prefix length, the prefix and the sum.
func EncodeRecords(rs []Record) []byte {
	n := 1
	for _, r := range rs {
		n += 2 + len(r.Prefix) + sha256.Size
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	for _, r := range rs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Prefix)))
		b = append(b, r.Prefix...)
		b = append(b, r.Sum[:]...)
	}
	return b
}

// DecodeRecords parses an xattr value written by EncodeRecords.
func DecodeRecords(b []byte) ([]Record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, errors.New("content records: unknown version")
	}
	b = b[1:]
	var rs []Record
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("content records: truncated")
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > MaxRecordPrefix || len(b) < n+sha256.Size {
			return nil, errors.New("content records: truncated or oversized prefix")
		}
		r := Record{Prefix: b[:n:n]}
		copy(r.Sum[:], b[n:n+sha256.Size])
		rs = append(rs, r)
		b = b[n+sha256.Size:]
	}
	return rs, nil
}

// ReadRecords returns the content records of an open object, nil when it
// has none or they cannot be read here (not root, no xattrs on the
// filesystem). A value that does not parse is an error: only this package
// writes it.
func ReadRecords(f *os.File) ([]Record, error) {
	var buf [512]byte
	n, err := unix.Fgetxattr(int(f.Fd()), RecordXattr, buf[:])
	if errors.Is(err, unix.ERANGE) {
		var size int
		if size, err = unix.Fgetxattr(int(f.Fd()), RecordXattr, nil); err == nil {
			big := make([]byte, size)
			n, err = unix.Fgetxattr(int(f.Fd()), RecordXattr, big)
			if err == nil {
				return DecodeRecords(big[:n])
			}
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: reading %s: %w", f.Name(), RecordXattr, err)
	}
	return DecodeRecords(buf[:n])
}

// Lookup returns the sum recorded for prefix.
func Lookup(rs []Record, prefix []byte) ([sha256.Size]byte, bool) {
	for _, r := range rs {
		if string(r.Prefix) == string(prefix) {
			return r.Sum, true
		}
	}
	return [sha256.Size]byte{}, false
}

// NewRecordHash starts the hash of a record for prefix: write the
// object's bytes to it.
func NewRecordHash(prefix []byte) hash.Hash {
	h := sha256.New()
	h.Write(prefix)
	return h
}

// addRecord adds rec to the records of the pending object f (see above).
// Failing to record is not an error: a record only spares a later reader
// a read.
func (r *Repository) addRecord(f *os.File, rec Record) {
	if r.recordsOff.Load() {
		return
	}
	rs, err := ReadRecords(f)
	if err != nil {
		rs = nil // an unreadable value is replaced
	}
	for _, old := range rs {
		if string(old.Prefix) == string(rec.Prefix) {
			return
		}
	}
	if len(rs) >= maxRecords {
		rs = rs[len(rs)-maxRecords+1:]
	}
	r.setRecords(f, append(rs, rec))
}

// setRecords replaces the records of f; a new object's temporary file,
// which cannot have any yet, is given its first one this way without
// the read addRecord does.
func (r *Repository) setRecords(f *os.File, rs []Record) {
	if r.recordsOff.Load() {
		return
	}
	if err := unix.Fsetxattr(int(f.Fd()), RecordXattr, EncodeRecords(rs), 0); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			r.recordsOff.Store(true)
		}
	}
}

// WriteOptions are WriteObjectWith's optional inputs.
type WriteOptions struct {
	// RecordPrefix, if not nil, asks for a content record of the object
	// for that prefix (at most MaxRecordPrefix bytes), computed in the
	// same pass as its fs-verity digest.
	RecordPrefix []byte
}
