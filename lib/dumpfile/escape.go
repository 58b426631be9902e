// Package dumpfile reads and writes the composefs-dump(5) text format: one
// line per path, "PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT
// DIGEST [XATTR...]". It is the human-readable twin of a composefs image and
// the input format of mkcomposefs --from-file.
package dumpfile

import (
	"fmt"
	"strings"
)

type escapeMode int

const (
	escapeStandard escapeMode = 0
	// escapeEqual also hex-escapes '=', which separates an xattr's name
	// from its value.
	escapeEqual escapeMode = 1 << iota
	// escapeLoneDash writes a value that is exactly "-" as \x2d, because
	// a bare "-" means "absent".
	escapeLoneDash
)

func escape(b *strings.Builder, s string, mode escapeMode) {
	if mode&escapeLoneDash != 0 && s == "-" {
		b.WriteString(`\x2d`)
		return
	}
	const hexd = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '=' && mode&escapeEqual != 0, c < 0x21, c > 0x7e:
			b.WriteString(`\x`)
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		default:
			b.WriteByte(c)
		}
	}
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func unescape(s string) (string, error) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return "", fmt.Errorf("no character after escape")
		}
		switch s[i] {
		case '\\':
			out = append(out, '\\')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+2 >= len(s) {
				return "", fmt.Errorf("no hex characters after hex escape")
			}
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("invalid hex escape \\x%s", s[i+1:i+3])
			}
			out = append(out, h<<4|l)
			i += 2
		default:
			return "", fmt.Errorf("unsupported escape \\%c", s[i])
		}
	}
	return string(out), nil
}

// unescapeOptional maps "-" to absent.
func unescapeOptional(s string) (string, bool, error) {
	if s == "-" {
		return "", false, nil
	}
	v, err := unescape(s)
	return v, true, err
}
