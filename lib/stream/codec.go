package stream

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The entry codec by hand. An entry line costs a reader the strict check
// (checkLine) and encoding/json's validation and reflective decoding, and
// a writer encoding/json's reflective encoding: a third of what a clone
// or an import spends on a 100k-entry list. decodeEntry reads the lines
// this package writes, in one pass; encodeEntry writes exactly the bytes
// encoding/json writes (TestEncodeEntryMatchesJSON, FuzzEntryCodec).

// decodeEntry decodes the shape of entry line that Writer writes: one
// compact object of the known entry keys, each once, with ASCII strings
// without escapes, plain integers and base64 values. For anything else (a
// name that is not ASCII or has an escape, a *Base64 field, an unknown
// key, null, whitespace, a syntax error) it returns false having decided
// nothing, and the caller checks and decodes the line with checkLine and
// UnmarshalJSON, which give the same Entry for every line this accepts
// (FuzzEntryCodec) and the error messages for the lines it does not.
func decodeEntry(line []byte, e *Entry) bool {
	d := entryDecoder{data: line}
	return d.entry(e)
}

type entryDecoder struct {
	data []byte
	pos  int
}

// The keys decodeEntry knows, as bits of a mask of the ones seen.
const (
	keyType = 1 << iota
	keyPath
	keyTarget
	keyLinkTo
	keySrc
	keyMode
	keyUID
	keyGID
	keyMtime
	keyMtimeNsec
	keyXattrs
	keySize
	keyInline
	keyComposefs
	keyOstree
	keyRdev
)

func entryKey(k []byte) int {
	switch string(k) { // no allocation: the compiler compares in place
	case "type":
		return keyType
	case "path":
		return keyPath
	case "target":
		return keyTarget
	case "linkTo":
		return keyLinkTo
	case "src":
		return keySrc
	case "mode":
		return keyMode
	case "uid":
		return keyUID
	case "gid":
		return keyGID
	case "mtime":
		return keyMtime
	case "mtimeNsec":
		return keyMtimeNsec
	case "xattrs":
		return keyXattrs
	case "size":
		return keySize
	case "inline":
		return keyInline
	case "composefs":
		return keyComposefs
	case "ostree":
		return keyOstree
	case "rdev":
		return keyRdev
	}
	return 0
}

func (d *entryDecoder) entry(e *Entry) bool {
	if !d.consume('{') || d.peek('}') {
		return false // an empty object has no path: the slow path says so
	}
	seen := 0
	for {
		k, ok := d.rawString()
		if !ok || !d.consume(':') {
			return false
		}
		key := entryKey(k)
		if key == 0 || seen&key != 0 {
			return false
		}
		seen |= key
		switch key {
		case keyType:
			s, ok := d.rawString()
			if !ok {
				return false
			}
			e.Type = Type(s)
		case keyPath:
			ok = d.str(&e.Path)
		case keyTarget:
			ok = d.str(&e.Target)
		case keyLinkTo:
			ok = d.str(&e.LinkTo)
		case keySrc:
			ok = d.str(&e.Src)
		case keyComposefs:
			ok = d.str(&e.Composefs)
		case keyOstree:
			ok = d.str(&e.Ostree)
		case keyMode:
			ok = d.uint32(&e.Mode)
		case keyUID:
			ok = d.uint32(&e.UID)
		case keyGID:
			ok = d.uint32(&e.GID)
		case keyMtimeNsec:
			ok = d.uint32(&e.MtimeNsec)
		case keyMtime:
			e.Mtime, ok = d.int(64)
		case keySize:
			e.Size, ok = d.int(64)
		case keyRdev:
			var v uint64
			v, ok = d.uint(64)
			e.Rdev = v
		case keyInline:
			e.Inline, ok = d.base64()
		case keyXattrs:
			ok = d.xattrs(e)
		}
		if !ok {
			return false
		}
		if d.consume('}') {
			break
		}
		if !d.consume(',') {
			return false
		}
	}
	// Only a line that is this object and nothing more, and a record
	// that is a tree entry with a path: every other case, and its error,
	// is the slow path's.
	return d.pos == len(d.data) && seen&keyPath != 0 && IsEntryType(e.Type)
}

func (d *entryDecoder) peek(c byte) bool {
	return d.pos < len(d.data) && d.data[d.pos] == c
}

func (d *entryDecoder) consume(c byte) bool {
	if d.peek(c) {
		d.pos++
		return true
	}
	return false
}

// rawString returns the bytes of a string of printable ASCII without
// escapes, which are its value; false for any other.
func (d *entryDecoder) rawString() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			d.pos++
			return d.data[start : d.pos-1], true
		}
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' {
			return nil, false
		}
		d.pos++
	}
	return nil, false
}

func (d *entryDecoder) str(dst *string) bool {
	s, ok := d.rawString()
	if ok {
		*dst = string(s)
	}
	return ok
}

// digits returns the digits of a JSON integer (no fraction or exponent,
// no leading zero), with its sign.
func (d *entryDecoder) digits(signed bool) ([]byte, bool) {
	start := d.pos
	if signed && d.peek('-') {
		d.pos++
	}
	first := d.pos
	for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
		d.pos++
	}
	n := d.pos - first
	if n == 0 || n > 1 && d.data[first] == '0' {
		return nil, false
	}
	if d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ',', '}':
		default:
			return nil, false // a fraction, an exponent, or worse
		}
	}
	return d.data[start:d.pos], true
}

func (d *entryDecoder) uint(bits int) (uint64, bool) {
	b, ok := d.digits(false)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b), 10, bits)
	return v, err == nil
}

func (d *entryDecoder) uint32(dst *uint32) bool {
	v, ok := d.uint(32)
	*dst = uint32(v)
	return ok
}

func (d *entryDecoder) int(bits int) (int64, bool) {
	b, ok := d.digits(true)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, bits)
	return v, err == nil
}

// base64 decodes a []byte value as encoding/json does (StdEncoding into
// a slice of DecodedLen; "" gives an empty, non-nil slice).
func (d *entryDecoder) base64() ([]byte, bool) {
	s, ok := d.rawString()
	if !ok {
		return nil, false
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		return nil, false
	}
	return b[:n], true
}

func (d *entryDecoder) xattrs(e *Entry) bool {
	if !d.consume('{') {
		return false
	}
	m := map[string][]byte{}
	e.Xattrs = m
	if d.consume('}') {
		return true
	}
	for {
		k, ok := d.rawString()
		if !ok || !d.consume(':') {
			return false
		}
		if _, dup := m[string(k)]; dup {
			return false
		}
		v, ok := d.base64()
		if !ok {
			return false
		}
		m[string(k)] = v
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

// encodeEntry appends the wire form of e: the bytes json.Marshal gives
// for it through entryJSON (or hardlinkJSON), field for field in their
// order, with omitempty where they have it.
func encodeEntry(buf []byte, e *Entry) []byte {
	buf = append(buf, `{"type":`...)
	buf = appendString(buf, string(e.Type))
	buf = appendBytesField(buf, "path", e.Path)
	if e.Type == TypeHardlink {
		buf = appendBytesField(buf, "linkTo", e.LinkTo)
		return append(buf, '}')
	}
	if e.Type == TypeSymlink {
		buf = appendBytesField(buf, "target", e.Target)
	}
	if e.Src != "" {
		buf = appendBytesField(buf, "src", e.Src)
	}
	buf = append(buf, `,"mode":`...)
	buf = strconv.AppendUint(buf, uint64(e.Mode), 10)
	buf = append(buf, `,"uid":`...)
	buf = strconv.AppendUint(buf, uint64(e.UID), 10)
	buf = append(buf, `,"gid":`...)
	buf = strconv.AppendUint(buf, uint64(e.GID), 10)
	buf = append(buf, `,"mtime":`...)
	buf = strconv.AppendInt(buf, e.Mtime, 10)
	if e.MtimeNsec != 0 {
		buf = append(buf, `,"mtimeNsec":`...)
		buf = strconv.AppendUint(buf, uint64(e.MtimeNsec), 10)
	}
	if len(e.Xattrs) > 0 {
		buf = append(buf, `,"xattrs":{`...)
		names := make([]string, 0, len(e.Xattrs))
		for name := range e.Xattrs {
			names = append(names, name)
		}
		slices.Sort(names) // as encoding/json sorts a map's keys
		for i, name := range names {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, name)
			buf = append(buf, ':')
			if v := e.Xattrs[name]; v == nil {
				buf = append(buf, "null"...)
			} else {
				buf = appendBase64(buf, v)
			}
		}
		buf = append(buf, '}')
	}
	if e.Type == TypeFile && e.Size != 0 {
		buf = append(buf, `,"size":`...)
		buf = strconv.AppendInt(buf, e.Size, 10)
	}
	if len(e.Inline) > 0 {
		buf = append(buf, `,"inline":`...)
		buf = appendBase64(buf, e.Inline)
	}
	if e.Composefs != "" {
		buf = append(buf, `,"composefs":`...)
		buf = appendString(buf, e.Composefs)
	}
	if e.Ostree != "" {
		buf = append(buf, `,"ostree":`...)
		buf = appendString(buf, e.Ostree)
	}
	if e.Rdev != 0 {
		buf = append(buf, `,"rdev":`...)
		buf = strconv.AppendUint(buf, e.Rdev, 10)
	}
	return append(buf, '}')
}

// appendBytesField appends ,"name":"s" for a UTF-8 s and
// ,"nameBase64":"..." for any other (splitBytes).
func appendBytesField(buf []byte, name, s string) []byte {
	buf = append(buf, ',', '"')
	buf = append(buf, name...)
	if utf8.ValidString(s) {
		buf = append(buf, `":`...)
		return appendString(buf, s)
	}
	buf = append(buf, `Base64":`...)
	return appendBase64(buf, []byte(s))
}

func appendBase64(buf []byte, b []byte) []byte {
	buf = append(buf, '"')
	buf = base64.StdEncoding.AppendEncode(buf, b)
	return append(buf, '"')
}

// appendString appends s as encoding/json writes a string. Printable
// ASCII other than the quote, the backslash and the HTML characters it
// escapes (<, >, &) is copied; a string with anything else is left to
// encoding/json itself.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(buf, q...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
