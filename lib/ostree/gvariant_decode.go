package ostree

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// UnmarshalGVariant parses data as GVariant type sig into the Go
// representation MarshalGVariant takes. It rejects data whose framing is
// inconsistent but does not by itself insist on normal form; use
// IsNormalForm for that (ostree requires it of metadata objects).
func UnmarshalGVariant(sig string, data []byte) (any, error) {
	t, err := parseGVType(sig)
	if err != nil {
		return nil, err
	}
	return decodeGVariant(t, data)
}

// IsNormalForm reports whether data is the normal-form serialization of a
// value of type sig. A normal form is unique, so decoding and re-encoding
// must give back the very same bytes.
func IsNormalForm(sig string, data []byte) bool {
	v, err := UnmarshalGVariant(sig, data)
	if err != nil {
		return false
	}
	again, err := MarshalGVariant(sig, v)
	return err == nil && bytes.Equal(again, data)
}

func decodeGVariant(t *gvType, data []byte) (any, error) {
	if t.fixedSize != 0 && len(data) != t.fixedSize {
		return nil, fmt.Errorf("gvariant %s: %d bytes for a fixed size of %d", t, len(data), t.fixedSize)
	}
	switch t.kind {
	case 'y':
		return data[0], nil
	case 'b':
		if data[0] > 1 {
			return nil, fmt.Errorf("gvariant b: byte %#x is not a boolean", data[0])
		}
		return data[0] == 1, nil
	case 'n':
		return int16(binary.LittleEndian.Uint16(data)), nil
	case 'q':
		return binary.LittleEndian.Uint16(data), nil
	case 'i', 'h':
		return int32(binary.LittleEndian.Uint32(data)), nil
	case 'u':
		return binary.LittleEndian.Uint32(data), nil
	case 'x':
		return int64(binary.LittleEndian.Uint64(data)), nil
	case 't':
		return binary.LittleEndian.Uint64(data), nil
	case 'd':
		return math.Float64frombits(binary.LittleEndian.Uint64(data)), nil
	case 's', 'o', 'g':
		if len(data) == 0 || data[len(data)-1] != 0 {
			return nil, fmt.Errorf("gvariant %s: string is not NUL-terminated", t)
		}
		s := data[:len(data)-1]
		if bytes.IndexByte(s, 0) >= 0 || !utf8.Valid(s) {
			return nil, fmt.Errorf("gvariant %s: string is not UTF-8 without NUL", t)
		}
		return string(s), nil
	case 'v':
		sep := bytes.LastIndexByte(data, 0)
		if sep < 0 {
			return nil, fmt.Errorf("gvariant v: no type string")
		}
		typ := string(data[sep+1:])
		inner, err := parseGVType(typ)
		if err != nil {
			return nil, err
		}
		val, err := decodeGVariant(inner, data[:sep])
		if err != nil {
			return nil, err
		}
		return Variant{Type: typ, Value: val}, nil
	case 'm':
		if len(data) == 0 {
			return nil, nil
		}
		if t.elem.fixedSize == 0 {
			if data[len(data)-1] != 0 {
				return nil, fmt.Errorf("gvariant %s: Just value lacks its trailing zero", t)
			}
			data = data[:len(data)-1]
		}
		return decodeGVariant(t.elem, data)
	case 'a':
		return decodeArray(t, data)
	case '(', '{':
		return decodeTuple(t, data)
	}
	return nil, fmt.Errorf("gvariant %s: unsupported type", t)
}

func readUintN(b []byte) uint64 {
	var x uint64
	for i := len(b) - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}

func decodeArray(t *gvType, data []byte) (any, error) {
	if t.elem.kind == 'y' {
		return bytes.Clone(data), nil
	}
	items := []any{}
	if t.elem.fixedSize != 0 {
		if len(data)%t.elem.fixedSize != 0 {
			return nil, fmt.Errorf("gvariant %s: %d bytes is not a multiple of %d", t, len(data), t.elem.fixedSize)
		}
		for i := 0; i < len(data); i += t.elem.fixedSize {
			v, err := decodeGVariant(t.elem, data[i:i+t.elem.fixedSize])
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	}
	if len(data) == 0 {
		return items, nil
	}
	w := offsetWidth(len(data))
	lastEnd := readUintN(data[len(data)-w:])
	if lastEnd > uint64(len(data)) || (uint64(len(data))-lastEnd)%uint64(w) != 0 {
		return nil, fmt.Errorf("gvariant %s: bad framing offset %d", t, lastEnd)
	}
	n := (uint64(len(data)) - lastEnd) / uint64(w)
	offsets := data[lastEnd:]
	pos := uint64(0)
	for i := uint64(0); i < n; i++ {
		end := readUintN(offsets[i*uint64(w) : (i+1)*uint64(w)])
		start := uint64(alignUp(int(pos), t.elem.align))
		if start > end || end > lastEnd {
			return nil, fmt.Errorf("gvariant %s: element %d framing out of range", t, i)
		}
		v, err := decodeGVariant(t.elem, data[start:end])
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		items = append(items, v)
		pos = end
	}
	return items, nil
}

func decodeTuple(t *gvType, data []byte) (any, error) {
	items := make([]any, 0, len(t.members))
	w := 0
	if t.fixedSize == 0 {
		w = offsetWidth(len(data))
	}
	offsetsEnd := len(data) // offsets are read from the end backwards
	pos := 0
	for i, m := range t.members {
		start := alignUp(pos, m.align)
		var end int
		switch {
		case m.fixedSize != 0:
			end = start + m.fixedSize
		case i == len(t.members)-1:
			end = offsetsEnd
		default:
			if offsetsEnd-w < 0 {
				return nil, fmt.Errorf("gvariant %s: missing framing offset for member %d", t, i)
			}
			offsetsEnd -= w
			end = int(readUintN(data[offsetsEnd : offsetsEnd+w]))
		}
		if start > end || end > len(data) {
			return nil, fmt.Errorf("gvariant %s: member %d framing out of range", t, i)
		}
		v, err := decodeGVariant(m, data[start:end])
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		items = append(items, v)
		pos = end
	}
	if pos > offsetsEnd {
		return nil, fmt.Errorf("gvariant %s: members overlap the framing offsets", t)
	}
	return items, nil
}
