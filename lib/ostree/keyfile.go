package ostree

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// KeyFile is the GKeyFile subset ostree's repo config uses: [groups],
// key=value lines and # comments. It keeps the original lines so that
// setting one key rewrites the file without disturbing the rest (ostree,
// bootc and admins all edit the same config).
type KeyFile struct {
	lines []string
}

// ParseKeyFile reads a GKeyFile.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	kf := &KeyFile{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	group := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || trimmed[0] == '#':
		case trimmed[0] == '[':
			if !strings.HasSuffix(trimmed, "]") || len(trimmed) < 3 {
				return nil, fmt.Errorf("line %d: malformed group header %q", n, line)
			}
			group = trimmed[1 : len(trimmed)-1]
		default:
			if group == "" {
				return nil, fmt.Errorf("line %d: key outside any group", n)
			}
			if !strings.Contains(line, "=") {
				return nil, fmt.Errorf("line %d: %q is not key=value", n, line)
			}
		}
		kf.lines = append(kf.lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return kf, nil
}

// find returns the line index of group's header and of key within it
// (-1 when absent).
func (kf *KeyFile) find(group, key string) (groupLine, keyLine int) {
	groupLine, keyLine = -1, -1
	current := ""
	for i, line := range kf.lines {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		if t[0] == '[' {
			current = t[1 : len(t)-1]
			if current == group && groupLine < 0 {
				groupLine = i
			}
			continue
		}
		k, _, _ := strings.Cut(t, "=")
		if current == group && strings.TrimSpace(k) == key {
			keyLine = i // GKeyFile: the last assignment wins
		}
	}
	return groupLine, keyLine
}

// Get returns the unescaped value of key in group.
func (kf *KeyFile) Get(group, key string) (string, bool) {
	_, i := kf.find(group, key)
	if i < 0 {
		return "", false
	}
	_, v, _ := strings.Cut(kf.lines[i], "=")
	return unescapeKeyFileValue(strings.TrimLeft(v, " \t")), true
}

// GetBool parses a GKeyFile boolean; absent keys give def.
func (kf *KeyFile) GetBool(group, key string, def bool) (bool, error) {
	v, ok := kf.Get(group, key)
	if !ok {
		return def, nil
	}
	switch strings.TrimSpace(v) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return def, fmt.Errorf("[%s] %s=%q is not a boolean", group, key, v)
}

// Set assigns key in group, adding the group or key if missing.
func (kf *KeyFile) Set(group, key, value string) {
	line := key + "=" + escapeKeyFileValue(value)
	g, k := kf.find(group, key)
	switch {
	case k >= 0:
		kf.lines[k] = line
	case g >= 0:
		// Insert after the group's last key so the group stays together.
		at := g + 1
		for at < len(kf.lines) && !strings.HasPrefix(strings.TrimSpace(kf.lines[at]), "[") {
			at++
		}
		for at > g+1 && strings.TrimSpace(kf.lines[at-1]) == "" {
			at--
		}
		kf.lines = append(kf.lines[:at], append([]string{line}, kf.lines[at:]...)...)
	default:
		if len(kf.lines) > 0 {
			kf.lines = append(kf.lines, "")
		}
		kf.lines = append(kf.lines, "["+group+"]", line)
	}
}

// Bytes serializes the file, newline-terminated as GKeyFile writes it.
func (kf *KeyFile) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range kf.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func unescapeKeyFileValue(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		i++
		switch v[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

func escapeKeyFileValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == ' ' && i == 0:
			b.WriteString(`\s`) // leading blanks would be trimmed on read
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
