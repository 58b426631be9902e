// Package canonjson writes JSON as bootc's canon_json (RFC 8785, the JSON
// Canonicalization Scheme) does for the values bootc writes: objects with
// keys sorted by UTF-16 code units, no whitespace, strings escaped only
// where JSON requires it. Numbers are not supported: bootc's canonical
// documents (the install aleph, print-configuration) hold none.
package canonjson

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf16"
)

// Marshal encodes v: nil, bool, string, []string, []any, map[string]string
// or map[string]any of these. A nil map or slice is null.
func Marshal(v any) ([]byte, error) {
	var b strings.Builder
	if err := encode(&b, v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func encode(b *strings.Builder, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		b.WriteString(String(x))
	case []string:
		if x == nil {
			b.WriteString("null")
			return nil
		}
		b.WriteByte('[')
		for i, s := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(String(s))
		}
		b.WriteByte(']')
	case []any:
		if x == nil {
			b.WriteString("null")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encode(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]string:
		if x == nil {
			b.WriteString("null")
			return nil
		}
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return encode(b, m)
	case map[string]any:
		if x == nil {
			b.WriteString("null")
			return nil
		}
		b.WriteByte('{')
		for i, k := range SortedKeys(x) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(String(k))
			b.WriteByte(':')
			if err := encode(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("canonjson: cannot encode %T", v)
	}
	return nil
}

// SortedKeys returns m's keys in RFC 8785 order: by their UTF-16 code
// units (which differs from byte order above U+FFFF).
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return slices.Compare(utf16.Encode([]rune(keys[i])), utf16.Encode([]rune(keys[j]))) < 0
	})
	return keys
}

// String quotes s as RFC 8785 does: '"' and '\\', the control characters
// (\b \t \n \f \r short, the rest \u00xx); everything else literal.
func String(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
