package ostree

import "fmt"

// gvType is a parsed GVariant type string. Only what ostree's objects use
// (plus the neighbouring basic types, which cost nothing) is supported:
// the spec's full type system would be dead code here.
type gvType struct {
	kind      byte      // the type character: 'y','b','s','a','(','{','v','m',...
	elem      *gvType   // for 'a' and 'm'
	members   []*gvType // for '(' and '{'
	align     int       // alignment in bytes (1, 2, 4 or 8)
	fixedSize int       // 0 means "variable size"
	sig       string
}

func (t *gvType) String() string { return t.sig }

// parseGVType parses exactly one complete type from sig.
func parseGVType(sig string) (*gvType, error) {
	t, rest, err := parseOneGVType(sig)
	if err != nil {
		return nil, fmt.Errorf("gvariant type %q: %w", sig, err)
	}
	if rest != "" {
		return nil, fmt.Errorf("gvariant type %q: trailing %q", sig, rest)
	}
	return t, nil
}

// mustGVType is for the package's own constant type strings.
func mustGVType(sig string) *gvType {
	t, err := parseGVType(sig)
	if err != nil {
		panic(err)
	}
	return t
}

func parseOneGVType(sig string) (*gvType, string, error) {
	if sig == "" {
		return nil, "", fmt.Errorf("unexpected end of type")
	}
	c := sig[0]
	basic := func(align, size int) (*gvType, string, error) {
		return &gvType{kind: c, align: align, fixedSize: size, sig: sig[:1]}, sig[1:], nil
	}
	switch c {
	case 'y', 'b':
		return basic(1, 1)
	case 'n', 'q':
		return basic(2, 2)
	case 'i', 'u', 'h':
		return basic(4, 4)
	case 'x', 't', 'd':
		return basic(8, 8)
	case 's', 'o', 'g':
		return basic(1, 0)
	case 'v':
		return basic(8, 0)
	case 'a', 'm':
		elem, rest, err := parseOneGVType(sig[1:])
		if err != nil {
			return nil, "", err
		}
		return &gvType{kind: c, elem: elem, align: elem.align, sig: sig[:len(sig)-len(rest)]}, rest, nil
	case '(', '{':
		closing := byte(')')
		if c == '{' {
			closing = '}'
		}
		t := &gvType{kind: c, align: 1}
		rest := sig[1:]
		for {
			if rest == "" {
				return nil, "", fmt.Errorf("unterminated %c", c)
			}
			if rest[0] == closing {
				rest = rest[1:]
				break
			}
			m, r, err := parseOneGVType(rest)
			if err != nil {
				return nil, "", err
			}
			t.members = append(t.members, m)
			rest = r
		}
		if c == '{' {
			if len(t.members) != 2 || t.members[0].isContainer() {
				return nil, "", fmt.Errorf("dict entry needs a basic key and one value")
			}
		}
		t.sig = sig[:len(sig)-len(rest)]
		fixed := true
		end := 0
		for _, m := range t.members {
			if m.align > t.align {
				t.align = m.align
			}
			if m.fixedSize == 0 {
				fixed = false
			}
			end = alignUp(end, m.align) + m.fixedSize
		}
		if fixed {
			end = alignUp(end, t.align)
			if end == 0 {
				end = 1 // the unit tuple "()" is one zero byte
			}
			t.fixedSize = end
		}
		return t, rest, nil
	}
	return nil, "", fmt.Errorf("unsupported type character %q", c)
}

func (t *gvType) isContainer() bool {
	switch t.kind {
	case 'a', 'm', '(', '{', 'v':
		return true
	}
	return false
}

func alignUp(n, align int) int {
	return (n + align - 1) &^ (align - 1)
}

// offsetWidth is the framing-offset size GVariant's normal form uses for a
// container whose serialized size (offsets included) is total.
func offsetWidth(total int) int {
	switch {
	case total == 0:
		return 0
	case total <= 0xff:
		return 1
	case total <= 0xffff:
		return 2
	case uint64(total) <= 0xffffffff:
		return 4
	}
	return 8
}

// offsetWidthFor picks the smallest width w such that a container with a
// body of bodySize bytes and n offsets of width w still fits in w bytes.
func offsetWidthFor(bodySize, n int) int {
	for _, w := range []int{1, 2, 4} {
		if uint64(bodySize)+uint64(n*w) <= uint64(1)<<(8*w)-1 {
			return w
		}
	}
	return 8
}
