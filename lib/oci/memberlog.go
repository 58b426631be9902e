package oci

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cfs-project/cfs/lib/fstree"
)

// MemberLog records, while a layer is imported, what merging needs of
// each of its members, so that the merged tree of a pull is built without
// reading the layer's stream back (which cost a pull of 100k files about
// a second of single-threaded tar parsing after its last layer). It is
// kept compact and free of pointers, the garbage collector never scanning
// it: a record per member in one byte slice, each path stored as the
// bytes it does not share with the previous one, and the object ids of
// the large bodies in a second slice, in tar order, since a body's id is
// known only once its worker has stored it.
//
// A log is complete, and used by BuildCheckedTreeFrom, only once the
// import that wrote it succeeded.
type MemberLog struct {
	recs     []byte // one record per member (see add)
	ids      []byte // object ids of regular members over InlineMax, each after its length
	members  int
	complete bool
	bad      error // a member the log cannot represent; the layer is then read back
	badID    bool  // an id too long for its length byte (the assembler's own field)

	// The previous record, which the next one is encoded against.
	prevPath                   string
	prevMtime                  int64
	prevMode, prevUID, prevGID uint32
}

// Record flags; the low three bits are the member's fstree.Kind.
const (
	logKindMask  = 0x07
	logDir       = 1 << 3
	logHardlink  = 1 << 4
	logNsec      = 1 << 5
	logXattrs    = 1 << 6
	logSameOwner = 1 << 7 // mode, uid and gid as in the previous record
)

// Len is the number of bytes the log holds.
func (l *MemberLog) Len() int { return len(l.recs) + len(l.ids) }

// Members is the number of members recorded.
func (l *MemberLog) Members() int { return l.members }

// usable reports whether the log holds the whole layer: its import
// succeeded and every member could be recorded.
func (l *MemberLog) usable() bool { return l != nil && l.complete && l.bad == nil && !l.badID }

// add records m. Its object id, if it has one (a regular member over
// InlineMax), is added separately with addObject, in the same order.
func (l *MemberLog) add(m *Member) {
	if l.bad != nil {
		return
	}
	if m.Kind > logKindMask {
		l.bad = fmt.Errorf("%s: kind %d", m.Path, m.Kind)
		return
	}
	if m.Kind == fstree.Regular && m.Size <= InlineMax && int64(len(m.Inline)) != m.Size {
		l.bad = fmt.Errorf("%s: %d inline bytes for a size of %d", m.Path, len(m.Inline), m.Size)
		return
	}
	flags := byte(m.Kind)
	if m.Dir {
		flags |= logDir
	}
	if m.Hardlink != "" {
		flags |= logHardlink
	}
	if m.Stat.MtimeNsec != 0 {
		flags |= logNsec
	}
	if m.Stat.Xattrs != nil {
		flags |= logXattrs
	}
	st := &m.Stat
	if l.members > 0 && st.Mode == l.prevMode && st.UID == l.prevUID && st.GID == l.prevGID {
		flags |= logSameOwner
	}
	b := append(l.recs, flags)
	keep := commonPrefix(l.prevPath, m.Path)
	b = binary.AppendUvarint(b, uint64(keep))
	b = appendString(b, m.Path[keep:])
	if flags&logSameOwner == 0 {
		b = binary.AppendUvarint(b, uint64(st.Mode))
		b = binary.AppendUvarint(b, uint64(st.UID))
		b = binary.AppendUvarint(b, uint64(st.GID))
	}
	b = binary.AppendVarint(b, st.Mtime-l.prevMtime)
	if flags&logNsec != 0 {
		b = binary.AppendUvarint(b, uint64(st.MtimeNsec))
	}
	if flags&logXattrs != 0 {
		b = binary.AppendUvarint(b, uint64(len(st.Xattrs)))
		for k, v := range st.Xattrs {
			b = appendString(b, k)
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	if flags&logHardlink != 0 {
		b = appendString(b, m.Hardlink)
	}
	switch m.Kind {
	case fstree.Regular:
		b = binary.AppendUvarint(b, uint64(m.Size))
		if m.Size <= InlineMax {
			b = append(b, m.Inline...)
		}
	case fstree.Symlink:
		b = appendString(b, m.Target)
	case fstree.CharDev, fstree.BlockDev:
		b = binary.AppendUvarint(b, m.Rdev)
	}
	l.recs = b
	l.members++
	l.prevPath, l.prevMtime = m.Path, st.Mtime
	l.prevMode, l.prevUID, l.prevGID = st.Mode, st.UID, st.GID
}

// finish marks the log complete, its import having succeeded, and gives
// back the room its ids grew into: the merged tree keeps the ids (Replay
// hands out pieces of them), through the EROFS image and beyond, and the
// room is about a tenth of them.
func (l *MemberLog) finish() {
	if cap(l.ids)-len(l.ids) > len(l.ids)/16 {
		l.ids = bytes.Clone(l.ids)
	}
	l.complete = true
}

// addObject records the object id of the next regular member over
// InlineMax.
func (l *MemberLog) addObject(id []byte) {
	if len(id) > 255 {
		l.badID = true
		return
	}
	l.ids = append(l.ids, byte(len(id)))
	l.ids = append(l.ids, id...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

var errLogCorrupt = errors.New("member log: corrupt record")

// logReader decodes a log's records in order.
type logReader struct {
	b    []byte
	ids  []byte
	path []byte
}

func (r *logReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *logReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next n bytes, or nil and ok false past the end.
func (r *logReader) bytes(n uint64) ([]byte, bool) {
	if n > uint64(len(r.b)) {
		r.b = nil
		return nil, false
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, true
}

func (r *logReader) string() (string, bool) {
	v, ok := r.bytes(r.uvarint())
	return string(v), ok
}

// Replay calls fn with each recorded member, in tar order, as ReadLayer
// gives them for the stored layer. fn gets the same *Member every time,
// refilled: it may keep the slices, strings and maps in it, not the
// pointer.
func (l *MemberLog) Replay(fn func(*Member) error) error {
	if l.bad != nil {
		return fmt.Errorf("member log: %w", l.bad)
	}
	if l.badID {
		return errors.New("member log: an object id longer than 255 bytes")
	}
	r := logReader{b: l.recs, ids: l.ids}
	var m Member
	var mtime int64
	var mode, uid, gid uint32
	for i := 0; i < l.members; i++ {
		if len(r.b) == 0 {
			return errLogCorrupt
		}
		flags := r.b[0]
		r.b = r.b[1:]
		keep := r.uvarint()
		add, ok := r.bytes(r.uvarint())
		if !ok || keep > uint64(len(r.path)) {
			return errLogCorrupt
		}
		r.path = append(r.path[:keep], add...)
		m = Member{Path: string(r.path), Kind: fstree.Kind(flags & logKindMask), Dir: flags&logDir != 0}
		if flags&logSameOwner == 0 {
			mode, uid, gid = uint32(r.uvarint()), uint32(r.uvarint()), uint32(r.uvarint())
		}
		mtime += r.varint()
		m.Stat = fstree.Stat{Mode: mode, UID: uid, GID: gid, Mtime: mtime}
		if flags&logNsec != 0 {
			m.Stat.MtimeNsec = uint32(r.uvarint())
		}
		if flags&logXattrs != 0 {
			n := r.uvarint()
			if n > uint64(len(r.b)) {
				return errLogCorrupt
			}
			m.Stat.Xattrs = make(map[string][]byte, n)
			for j := uint64(0); j < n; j++ {
				k, ok1 := r.string()
				v, ok2 := r.bytes(r.uvarint())
				if !ok1 || !ok2 {
					return errLogCorrupt
				}
				// Never nil, as a header's empty value is not.
				m.Stat.Xattrs[k] = append(make([]byte, 0, len(v)), v...)
			}
		}
		if flags&logHardlink != 0 {
			if m.Hardlink, ok = r.string(); !ok {
				return errLogCorrupt
			}
		}
		switch m.Kind {
		case fstree.Regular:
			size := r.uvarint()
			if size > 1<<62 {
				return errLogCorrupt
			}
			m.Size = int64(size)
			if m.Size <= InlineMax {
				v, ok := r.bytes(size)
				if !ok {
					return errLogCorrupt
				}
				// Exactly the size, as ReadLayer makes it: the tree
				// keeps every one of these.
				m.Inline = make([]byte, size)
				copy(m.Inline, v)
			} else {
				if len(r.ids) == 0 || int(r.ids[0]) >= len(r.ids) {
					return fmt.Errorf("member log: no object id for %s", m.Path)
				}
				n := int(r.ids[0]) + 1
				// A piece of the log's ids, not a copy: the tree keeps
				// every one of these, and one allocation holds them all.
				m.Object = r.ids[1:n:n]
				r.ids = r.ids[n:]
			}
		case fstree.Symlink:
			if m.Target, ok = r.string(); !ok {
				return errLogCorrupt
			}
		case fstree.CharDev, fstree.BlockDev:
			m.Rdev = r.uvarint()
		}
		if r.b == nil {
			return errLogCorrupt
		}
		if err := fn(&m); err != nil {
			return err
		}
	}
	if len(r.b) != 0 || len(r.ids) != 0 {
		return errLogCorrupt
	}
	return nil
}
