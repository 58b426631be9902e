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
// the exact prefix it would hash. Beside them the writer may keep the
// CRC-64/ISO of the bytes (ObjectRecords), which tar-split records for a
// layer member's body; cfs-fsck checks it in the same read.
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

// RecordXattr is the xattr holding an object's content records and its
// CRC record.
const RecordXattr = "trusted.cfs.content-sha256"

// Record is SHA-256(Prefix || the object's bytes).
type Record struct {
	Prefix []byte
	Sum    [sha256.Size]byte
}

// ObjectRecords is everything kept with an object in RecordXattr: its
// content records and, when the writer computed it, the CRC-64/ISO of its
// bytes, which tar-split records for a layer member's body (so that
// cfs-clone --to containers-storage can write a layer's tar-split
// without reading the bodies it clones).
type ObjectRecords struct {
	Content  []Record
	CRC64    uint64
	HasCRC64 bool
}

// empty reports whether there is nothing to keep.
func (o *ObjectRecords) empty() bool { return len(o.Content) == 0 && !o.HasCRC64 }

// The xattr's value starts with a version byte.
//
// Version 1 (written before CRC records existed, still read): each content
// record as a big-endian uint16 prefix length, the prefix and the sum.
//
// Version 2 (written now): a sequence of fields, each a kind byte, a
// big-endian uint16 length and that many bytes. Kinds: fieldContent (the
// prefix, then the 32-byte sum) and fieldCRC64 (8 bytes, big-endian).
// A reader skips kinds it does not know, so a later writer can add one
// without a new version; a field of a known kind with a wrong length makes
// the value invalid.
const (
	recordVersion1 = 1
	recordVersion2 = 2
	fieldContent   = 1
	fieldCRC64     = 2
	// MaxRecordPrefix bounds a prefix: an ostree file header with a few
	// xattrs is well under it, and the xattr stays small.
	MaxRecordPrefix = 1024
	// maxRecords is how many content records an object keeps; a new one
	// beyond that replaces the oldest.
	maxRecords = 4
)

// EncodeObjectRecords is the xattr value for o (version 2).
func EncodeObjectRecords(o ObjectRecords) []byte {
	n := 1
	for _, r := range o.Content {
		n += 3 + len(r.Prefix) + sha256.Size
	}
	if o.HasCRC64 {
		n += 3 + 8
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion2)
	for _, r := range o.Content {
		b = append(b, fieldContent)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Prefix)+sha256.Size))
		b = append(b, r.Prefix...)
		b = append(b, r.Sum[:]...)
	}
	if o.HasCRC64 {
		b = append(b, fieldCRC64)
		b = binary.BigEndian.AppendUint16(b, 8)
		b = binary.BigEndian.AppendUint64(b, o.CRC64)
	}
	return b
}

// DecodeObjectRecords parses an xattr value of either version.
func DecodeObjectRecords(b []byte) (ObjectRecords, error) {
	var o ObjectRecords
	if len(b) == 0 {
		return o, errors.New("content records: empty value")
	}
	switch b[0] {
	case recordVersion1:
		b = b[1:]
		for len(b) > 0 {
			if len(b) < 2 {
				return o, errors.New("content records: truncated")
			}
			n := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			if n > MaxRecordPrefix || len(b) < n+sha256.Size {
				return o, errors.New("content records: truncated or oversized prefix")
			}
			r := Record{Prefix: b[:n:n]}
			copy(r.Sum[:], b[n:n+sha256.Size])
			o.Content = append(o.Content, r)
			b = b[n+sha256.Size:]
		}
		return o, nil
	case recordVersion2:
		b = b[1:]
		for len(b) > 0 {
			if len(b) < 3 {
				return o, errors.New("content records: truncated field")
			}
			kind, n := b[0], int(binary.BigEndian.Uint16(b[1:]))
			b = b[3:]
			if len(b) < n {
				return o, errors.New("content records: truncated field")
			}
			v := b[:n:n]
			b = b[n:]
			switch kind {
			case fieldContent:
				if n < sha256.Size || n-sha256.Size > MaxRecordPrefix {
					return o, fmt.Errorf("content records: content record of %d bytes", n)
				}
				r := Record{Prefix: v[:n-sha256.Size]}
				copy(r.Sum[:], v[n-sha256.Size:])
				o.Content = append(o.Content, r)
			case fieldCRC64:
				if n != 8 || o.HasCRC64 {
					return o, errors.New("content records: bad CRC64 record")
				}
				o.CRC64, o.HasCRC64 = binary.BigEndian.Uint64(v), true
			}
		}
		return o, nil
	}
	return o, fmt.Errorf("content records: unknown version %d", b[0])
}

// EncodeRecords is the xattr value for content records alone.
func EncodeRecords(rs []Record) []byte {
	return EncodeObjectRecords(ObjectRecords{Content: rs})
}

// DecodeRecords parses an xattr value for its content records.
func DecodeRecords(b []byte) ([]Record, error) {
	o, err := DecodeObjectRecords(b)
	return o.Content, err
}

// ReadObjectRecords returns what is recorded with an open object: the
// zero value when nothing is, or it cannot be read here (not root, no
// xattrs on the filesystem). A value that does not parse is an error:
// only this package writes it.
func ReadObjectRecords(f *os.File) (ObjectRecords, error) {
	var buf [512]byte
	n, err := unix.Fgetxattr(int(f.Fd()), RecordXattr, buf[:])
	if errors.Is(err, unix.ERANGE) {
		var size int
		if size, err = unix.Fgetxattr(int(f.Fd()), RecordXattr, nil); err == nil {
			big := make([]byte, size)
			n, err = unix.Fgetxattr(int(f.Fd()), RecordXattr, big)
			if err == nil {
				return DecodeObjectRecords(big[:n])
			}
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			return ObjectRecords{}, nil
		}
		return ObjectRecords{}, fmt.Errorf("%s: reading %s: %w", f.Name(), RecordXattr, err)
	}
	return DecodeObjectRecords(buf[:n])
}

// ReadRecords returns the content records of an open object, nil when it
// has none (see ReadObjectRecords).
func ReadRecords(f *os.File) ([]Record, error) {
	o, err := ReadObjectRecords(f)
	return o.Content, err
}

// ReadCRC64 returns the CRC-64/ISO recorded with an open object, if any.
func ReadCRC64(f *os.File) (uint64, bool, error) {
	o, err := ReadObjectRecords(f)
	return o.CRC64, o.HasCRC64, err
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

// addRecord adds rec (at most one content record and a CRC) to the
// records of the pending object f (see above). Failing to record is not
// an error: a record only spares a later reader a read.
func (r *Repository) addRecord(f *os.File, rec ObjectRecords) {
	if r.recordsOff.Load() {
		return
	}
	o, err := ReadObjectRecords(f)
	if err != nil {
		o = ObjectRecords{} // an unreadable value is replaced
	}
	changed := false
	if rec.HasCRC64 && !o.HasCRC64 {
		o.CRC64, o.HasCRC64, changed = rec.CRC64, true, true
	}
	for _, c := range rec.Content {
		if _, ok := Lookup(o.Content, c.Prefix); ok {
			continue
		}
		if len(o.Content) >= maxRecords {
			o.Content = o.Content[len(o.Content)-maxRecords+1:]
		}
		o.Content, changed = append(o.Content, c), true
	}
	if changed {
		r.setRecords(f, o)
	}
}

// setRecords replaces the records of f; a new object's temporary file,
// which cannot have any yet, is given its first ones this way without
// the read addRecord does.
func (r *Repository) setRecords(f *os.File, o ObjectRecords) {
	if r.recordsOff.Load() || o.empty() {
		return
	}
	if err := unix.Fsetxattr(int(f.Fd()), RecordXattr, EncodeObjectRecords(o), 0); err != nil {
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
	// CRC64 asks for the CRC-64/ISO of the bytes to be recorded too, from
	// the same pass (what tar-split records for a layer member's body).
	CRC64 bool
}
