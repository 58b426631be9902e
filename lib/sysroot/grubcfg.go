package sysroot

import (
	"fmt"
	"strings"
)

// ParseGrubUserCfg reads the menu entries bootc writes to grub2/user.cfg for
// UKIs on GRUB classic, one per deployment:
//
//	menuentry "<label>: (<verity>)" { search ... ; chainloader /EFI/Linux/bootc/bootc_composefs-<verity>.efi }
//
// Each becomes a BLSEntry with Title and Efi (the chainloader path) set, so
// the rest of the package treats both kinds of entries alike. Entries keep
// file order, which is GRUB's menu order.
func ParseGrubUserCfg(path string) ([]*BLSEntry, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	s := string(data)
	var out []*BLSEntry
	for {
		i := indexWord(s, "menuentry")
		if i < 0 {
			return out, nil
		}
		s = s[i+len("menuentry"):]
		open := strings.IndexByte(s, '{')
		if open < 0 {
			return nil, fmt.Errorf("%s: menuentry without a body", path)
		}
		title := strings.Trim(strings.TrimSpace(s[:open]), `"'`)
		end := matchBrace(s[open:])
		if end < 0 {
			return nil, fmt.Errorf("%s: menuentry %q: no closing brace", path, title)
		}
		body := s[open+1 : open+end]
		s = s[open+end+1:]
		e := &BLSEntry{Path: path, Title: title, menuentry: true}
		for _, stmt := range strings.FieldsFunc(body, func(r rune) bool { return r == ';' || r == '\n' }) {
			f := strings.Fields(stmt)
			if len(f) == 2 && f[0] == "chainloader" {
				e.Efi = f[1]
			}
		}
		if e.Efi == "" {
			return nil, fmt.Errorf("%s: menuentry %q has no chainloader", path, title)
		}
		out = append(out, e)
	}
}

// indexWord finds word at the start of a line (after blanks), so that a
// title containing "menuentry" is not mistaken for the next entry.
func indexWord(s, word string) int {
	off := 0
	for _, line := range strings.SplitAfter(s, "\n") {
		t := strings.TrimLeft(line, " \t")
		if strings.HasPrefix(t, word+" ") || strings.HasPrefix(t, word+"\t") {
			return off + len(line) - len(t)
		}
		off += len(line)
	}
	return -1
}

// matchBrace returns the index of the brace closing s[0] ('{'), counting
// nested braces: the body itself uses "${EFI_PART_UUID}".
func matchBrace(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return -1
}
