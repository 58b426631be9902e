package ostree

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Variant is a GVariant "v": a value together with its own type string.
// Commit metadata (a{sv}) values are Variants.
type Variant struct {
	Type  string
	Value any
}

// MarshalGVariant serializes v as GVariant type sig in normal form, the only
// form ostree accepts for metadata objects (fsck checks it) and the form its
// checksums are defined over.
//
// Go representations: y uint8, b bool, n int16, q uint16, i/h int32,
// u uint32, x int64, t uint64, d float64, s/o/g string, ay []byte, other
// arrays []any, tuples and dict entries []any (one element per member),
// v Variant, maybe: nil for Nothing, otherwise the value itself.
func MarshalGVariant(sig string, v any) ([]byte, error) {
	t, err := parseGVType(sig)
	if err != nil {
		return nil, err
	}
	return appendGVariant(nil, t, v)
}

// appendGVariant appends the serialization of v to buf. Alignment is
// computed from len(buf), which is correct because every container starts
// at an offset that is a multiple of its own alignment (and so of any of
// its members' alignment) when the top-level value starts at offset 0.
func appendGVariant(buf []byte, t *gvType, v any) ([]byte, error) {
	mismatch := func() ([]byte, error) {
		return nil, fmt.Errorf("gvariant %s: cannot serialize Go value of type %T", t, v)
	}
	switch t.kind {
	case 'y':
		x, ok := v.(uint8)
		if !ok {
			return mismatch()
		}
		return append(buf, x), nil
	case 'b':
		x, ok := v.(bool)
		if !ok {
			return mismatch()
		}
		if x {
			return append(buf, 1), nil
		}
		return append(buf, 0), nil
	case 'n':
		x, ok := v.(int16)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint16(buf, uint16(x)), nil
	case 'q':
		x, ok := v.(uint16)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint16(buf, x), nil
	case 'i', 'h':
		x, ok := v.(int32)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint32(buf, uint32(x)), nil
	case 'u':
		x, ok := v.(uint32)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint32(buf, x), nil
	case 'x':
		x, ok := v.(int64)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint64(buf, uint64(x)), nil
	case 't':
		x, ok := v.(uint64)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint64(buf, x), nil
	case 'd':
		x, ok := v.(float64)
		if !ok {
			return mismatch()
		}
		return binary.LittleEndian.AppendUint64(buf, math.Float64bits(x)), nil
	case 's', 'o', 'g':
		x, ok := v.(string)
		if !ok {
			return mismatch()
		}
		if !utf8.ValidString(x) || strings.IndexByte(x, 0) >= 0 {
			return nil, fmt.Errorf("gvariant %s: string %q is not UTF-8 without NUL", t, x)
		}
		buf = append(buf, x...)
		return append(buf, 0), nil
	case 'v':
		x, ok := v.(Variant)
		if !ok {
			return mismatch()
		}
		inner, err := parseGVType(x.Type)
		if err != nil {
			return nil, err
		}
		// The child's alignment is relative to the variant's start, which
		// is 8-aligned, so absolute positions still work.
		buf, err = appendGVariant(buf, inner, x.Value)
		if err != nil {
			return nil, err
		}
		buf = append(buf, 0)
		return append(buf, x.Type...), nil
	case 'm':
		if v == nil {
			return buf, nil
		}
		buf, err := appendGVariant(buf, t.elem, v)
		if err != nil {
			return nil, err
		}
		if t.elem.fixedSize == 0 {
			buf = append(buf, 0)
		}
		return buf, nil
	case 'a':
		return appendArray(buf, t, v)
	case '(', '{':
		return appendTuple(buf, t, v)
	}
	return nil, fmt.Errorf("gvariant %s: unsupported type", t)
}

func pad(buf []byte, start, align int) []byte {
	for (len(buf)-start)%align != 0 {
		buf = append(buf, 0)
	}
	return buf
}

func appendArray(buf []byte, t *gvType, v any) ([]byte, error) {
	if t.elem.kind == 'y' {
		x, ok := v.([]byte)
		if !ok {
			return nil, fmt.Errorf("gvariant %s: cannot serialize Go value of type %T", t, v)
		}
		return append(buf, x...), nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("gvariant %s: cannot serialize Go value of type %T", t, v)
	}
	start := len(buf)
	var err error
	if t.elem.fixedSize != 0 {
		// Fixed-size elements are already a multiple of their alignment,
		// so they pack with no padding and need no offsets.
		for i, it := range items {
			if buf, err = appendGVariant(buf, t.elem, it); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return buf, nil
	}
	ends := make([]int, len(items))
	for i, it := range items {
		buf = pad(buf, start, t.elem.align)
		if buf, err = appendGVariant(buf, t.elem, it); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		ends[i] = len(buf) - start
	}
	return appendOffsets(buf, len(buf)-start, ends), nil
}

func appendTuple(buf []byte, t *gvType, v any) ([]byte, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("gvariant %s: cannot serialize Go value of type %T", t, v)
	}
	if len(items) != len(t.members) {
		return nil, fmt.Errorf("gvariant %s: %d values for %d members", t, len(items), len(t.members))
	}
	start := len(buf)
	var ends []int
	var err error
	for i, m := range t.members {
		buf = pad(buf, start, m.align)
		if buf, err = appendGVariant(buf, m, items[i]); err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		// Only variable-size members that are not last need framing:
		// the last one extends to the offsets, fixed ones have known ends.
		if m.fixedSize == 0 && i != len(t.members)-1 {
			ends = append(ends, len(buf)-start)
		}
	}
	if t.fixedSize != 0 {
		for len(buf)-start < t.fixedSize {
			buf = append(buf, 0)
		}
		return buf, nil
	}
	// Tuple offsets are stored last-member-first.
	for i, j := 0, len(ends)-1; i < j; i, j = i+1, j-1 {
		ends[i], ends[j] = ends[j], ends[i]
	}
	return appendOffsets(buf, len(buf)-start, ends), nil
}

func appendOffsets(buf []byte, bodySize int, offsets []int) []byte {
	if len(offsets) == 0 {
		return buf
	}
	w := offsetWidthFor(bodySize, len(offsets))
	for _, o := range offsets {
		buf = appendUintN(buf, uint64(o), w)
	}
	return buf
}

func appendUintN(buf []byte, x uint64, w int) []byte {
	for i := 0; i < w; i++ {
		buf = append(buf, byte(x>>(8*i)))
	}
	return buf
}
