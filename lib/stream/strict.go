package stream

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// encoding/json is lenient where the object list must not be: it matches
// keys case-insensitively ("PATH" fills path), lets the last of two equal
// keys win, and turns invalid UTF-8 and unpaired surrogate escapes into
// U+FFFD. A stream is a contract other programs implement, so one record
// must have one meaning: checkLine refuses all of these before a line is
// decoded.

// shape is what the strict check knows of a JSON object: the keys a
// struct declares (with the shapes of their values), or any keys for a
// map. A nil shape accepts any value.
type shape struct {
	fields  map[string]*shape
	elem    *shape // arrays
	anyKeys bool   // maps: keys are data (xattr names), not field names
}

// recordShape accepts every record type: a key is checked against the
// union of the fields of image, entry and end records. The names do not
// collide, and a field foreign to a record's type is ignored as any
// unknown field is.
var recordShape = func() *shape {
	s := &shape{fields: map[string]*shape{}}
	for _, t := range []reflect.Type{reflect.TypeOf(entryJSON{}), reflect.TypeOf(Image{}), reflect.TypeOf(End{})} {
		for k, v := range shapeOf(t).fields {
			s.fields[k] = v
		}
	}
	return s
}()

// shapeOf derives the shape of a Go type from its json tags, as
// encoding/json would read it.
func shapeOf(t reflect.Type) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		s := &shape{fields: map[string]*shape{}}
		addFields(s, t)
		return s
	case reflect.Map:
		return &shape{anyKeys: true}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // base64 text
		}
		return &shape{elem: shapeOf(t.Elem())}
	}
	return nil
}

func addFields(s *shape, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(s, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := s.fields[name]; !ok { // an outer field shadows a promoted one
			s.fields[name] = shapeOf(f.Type)
		}
	}
}

// checkLine applies the strict rules to one line of a stream.
func checkLine(line []byte) error {
	if !utf8.Valid(line) {
		at := 0
		for at < len(line) {
			r, n := utf8.DecodeRune(line[at:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			at += n
		}
		return fmt.Errorf("invalid UTF-8 at byte %d (JSON text is UTF-8; a name that is not travels base64-encoded in its *Base64 field)", at+1)
	}
	sc := scanner{data: line}
	err := sc.value(recordShape, "")
	if errors.Is(err, errSyntax) {
		return nil // encoding/json reports the syntax error, with its position
	}
	return err
}

var errSyntax = errors.New("syntax")

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// value scans one JSON value; where is the key path that leads to it, for
// messages.
func (s *scanner) value(sh *shape, where string) error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return errSyntax
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(sh, where)
	case c == '[':
		s.pos++
		var elem *shape
		if sh != nil {
			elem = sh.elem
		}
		s.skipSpace()
		if s.pos < len(s.data) && s.data[s.pos] == ']' {
			s.pos++
			return nil
		}
		for i := 0; ; i++ {
			if err := s.value(elem, fmt.Sprintf("%s[%d]", where, i)); err != nil {
				return err
			}
			s.skipSpace()
			if s.pos >= len(s.data) {
				return errSyntax
			}
			s.pos++
			switch s.data[s.pos-1] {
			case ']':
				return nil
			case ',':
			default:
				return errSyntax
			}
		}
	case c == '"':
		_, err := s.str(false, where)
		return err
	default:
		// A number, true, false or null: encoding/json checks the syntax.
		for s.pos < len(s.data) && strings.IndexByte(",]} \t\r\n", s.data[s.pos]) < 0 {
			s.pos++
		}
		return nil
	}
}

func (s *scanner) object(sh *shape, where string) error {
	s.pos++ // {
	var seen []string
	var seenSet map[string]bool // for objects with many keys (xattrs)
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return errSyntax
		}
		key, err := s.str(true, where)
		if err != nil {
			return err
		}
		dup := false
		if seenSet != nil {
			dup = seenSet[key]
			seenSet[key] = true
		} else {
			for _, k := range seen {
				dup = dup || k == key
			}
			seen = append(seen, key)
			if len(seen) > 16 {
				seenSet = make(map[string]bool, 2*len(seen))
				for _, k := range seen {
					seenSet[k] = true
				}
			}
		}
		if dup {
			return fmt.Errorf("duplicate key %q%s (keys are unique)", key, in(where))
		}
		var valueShape *shape
		if sh != nil && !sh.anyKeys && sh.fields != nil {
			if vs, ok := sh.fields[key]; ok {
				valueShape = vs
			} else {
				for name := range sh.fields {
					if strings.EqualFold(name, key) {
						return fmt.Errorf("key %q%s is not %q (keys are case-sensitive)", key, in(where), name)
					}
				}
			}
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return errSyntax
		}
		s.pos++
		sub := key
		if where != "" {
			sub = where + "." + key
		}
		if err := s.value(valueShape, sub); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return errSyntax
		}
		s.pos++
		switch s.data[s.pos-1] {
		case '}':
			return nil
		case ',':
		default:
			return errSyntax
		}
	}
}

func in(where string) string {
	if where == "" {
		return ""
	}
	return " in " + strconv.Quote(where)
}

// str scans a string starting at its opening quote and refuses escapes of
// unpaired surrogates, which name no Unicode character. It returns the
// decoded text when keep is set (keys), "" otherwise.
func (s *scanner) str(keep bool, where string) (string, error) {
	s.pos++ // opening quote
	var out []byte
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			if keep {
				out = append(out, s.data[start:s.pos]...)
			}
			s.pos++
			return string(out), nil
		case c < 0x20:
			return "", errSyntax
		case c != '\\':
			s.pos++
			continue
		}
		if keep {
			out = append(out, s.data[start:s.pos]...)
		}
		if s.pos+1 >= len(s.data) {
			return "", errSyntax
		}
		esc := s.data[s.pos+1]
		s.pos += 2
		if esc != 'u' {
			if keep {
				switch esc {
				case 'b':
					out = append(out, '\b')
				case 'f':
					out = append(out, '\f')
				case 'n':
					out = append(out, '\n')
				case 'r':
					out = append(out, '\r')
				case 't':
					out = append(out, '\t')
				default:
					out = append(out, esc)
				}
			}
			start = s.pos
			continue
		}
		r, ok := s.hex4()
		if !ok {
			return "", errSyntax
		}
		if utf16.IsSurrogate(r) {
			r2 := rune(-1)
			if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
				s.pos += 2
				if r2, ok = s.hex4(); !ok {
					return "", errSyntax
				}
			}
			dec := utf16.DecodeRune(r, r2)
			if dec == utf8.RuneError {
				return "", fmt.Errorf("a string%s holds the escape \\u%04x, an unpaired surrogate that names no character", in(where), r)
			}
			r = dec
		}
		if keep {
			out = utf8.AppendRune(out, r)
		}
		start = s.pos
	}
	return "", errSyntax
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.pos += 4
	return rune(v), true
}
