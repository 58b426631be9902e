package ostree

import (
	"fmt"
	"strconv"
	"strings"
)

// Ref prefixes ostree-ext (bootc) uses for container images.
const (
	ImageRefPrefix = "ostree/container/image"
	BlobRefPrefix  = "ostree/container/blob"
)

// EscapeRef maps an arbitrary string (an image reference, a digest) into
// ref-name characters the way ostree-ext's refescape does, so that bootc
// finds and unescapes the refs we write: ASCII alphanumerics and '-' pass,
// '/' passes only after an alphanumeric and when not last (an empty path
// component is not a valid ref), '_' doubles, everything else becomes
// _XX_ with the code point in uppercase hex.
func EscapeRef(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("cannot escape an empty string into a ref")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("cannot escape a string with NUL into a ref")
	}
	runes := []rune(s)
	var b strings.Builder
	prevAlnum := false
	for i, c := range runes {
		alnum := c < 0x80 && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9')
		switch {
		case alnum, c == '-':
			b.WriteRune(c)
		case c == '/' && prevAlnum && i+1 < len(runes):
			b.WriteRune(c)
		case c == '_':
			b.WriteString("__")
		default:
			fmt.Fprintf(&b, "_%02X_", c)
		}
		prevAlnum = alnum
	}
	return b.String(), nil
}

// UnescapeRef reverses EscapeRef.
func UnescapeRef(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x80 && (c == '-' || c == '/' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'):
			b.WriteByte(c)
		case c == '_':
			if i+1 < len(s) && s[i+1] == '_' {
				b.WriteByte('_')
				i++
				continue
			}
			end := strings.IndexByte(s[i+1:], '_')
			if end < 0 {
				return "", fmt.Errorf("ref %q: unterminated escape", s)
			}
			cp, err := strconv.ParseUint(s[i+1:i+1+end], 16, 32)
			if err != nil {
				return "", fmt.Errorf("ref %q: bad escape: %w", s, err)
			}
			b.WriteRune(rune(cp))
			i += end + 1
		default:
			return "", fmt.Errorf("ref %q: invalid character %q", s, c)
		}
	}
	return b.String(), nil
}

// ImageRef is the ref ostree-ext keeps an image's merge commit under;
// imageReference is its ImageReference text, e.g.
// "docker://quay.io/example/os:latest".
func ImageRef(imageReference string) (string, error) {
	esc, err := EscapeRef(imageReference)
	if err != nil {
		return "", err
	}
	return ImageRefPrefix + "/" + esc, nil
}

// BlobRef is the ref ostree-ext keeps a layer's commit under.
func BlobRef(digest string) (string, error) {
	esc, err := EscapeRef(digest)
	if err != nil {
		return "", err
	}
	return BlobRefPrefix + "/" + esc, nil
}

// ValidateRefName applies ostree's ref grammar: '/'-separated fragments
// matching [\w\d][-._\w\d]* (ASCII word characters).
func ValidateRefName(ref string) error {
	if ref == "" {
		return fmt.Errorf("empty ref name")
	}
	word := func(c byte) bool {
		return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	for _, frag := range strings.Split(ref, "/") {
		if frag == "" || !word(frag[0]) {
			return fmt.Errorf("invalid ref name %q", ref)
		}
		for i := 1; i < len(frag); i++ {
			if c := frag[i]; !word(c) && c != '-' && c != '.' {
				return fmt.Errorf("invalid ref name %q: character %q", ref, c)
			}
		}
	}
	return nil
}
