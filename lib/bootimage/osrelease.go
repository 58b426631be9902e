package bootimage

import "strings"

// OSRelease is an os-release file (os-release(5)): keys and their
// unquoted values.
type OSRelease map[string]string

// ParseOSRelease reads os-release text the way composefs-rs does (it
// names bootc's boot entries from it): lines "KEY=value", comments
// skipped, a later key replacing an earlier one, values unquoted with
// shell-like single and double quotes. A value with an unterminated quote
// counts as absent.
func ParseOSRelease(text string) OSRelease {
	o := OSRelease{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if v, ok := dequote(value); ok {
			o[key] = v
		} else {
			delete(o, key)
		}
	}
	return o
}

// dequote removes the quoting of one os-release value. Inside double
// quotes a backslash takes the next character literally.
func dequote(s string) (string, bool) {
	var b strings.Builder
	r := []rune(strings.TrimSpace(s))
	for i := 0; i < len(r); i++ {
		switch c := r[i]; c {
		case '"':
			for i++; ; i++ {
				if i >= len(r) {
					return "", false
				}
				if r[i] == '"' {
					break
				}
				if r[i] == '\\' {
					i++
					if i >= len(r) {
						return "", false
					}
				}
				b.WriteRune(r[i])
			}
		case '\'':
			for i++; ; i++ {
				if i >= len(r) {
					return "", false
				}
				if r[i] == '\'' {
					break
				}
				b.WriteRune(r[i])
			}
		default:
			b.WriteRune(c)
		}
	}
	return b.String(), true
}

func (o OSRelease) first(keys ...string) string {
	for _, k := range keys {
		if v, ok := o[k]; ok {
			return v
		}
	}
	return ""
}

// ID is the ID field, "" when absent (bootc then names entries "bootc").
func (o OSRelease) ID() string { return o["ID"] }

// PrettyName is what bootc titles a boot entry with: PRETTY_NAME, else
// NAME, else ID; "" when none is set.
func (o OSRelease) PrettyName() string { return o.first("PRETTY_NAME", "NAME", "ID") }

// Version is what bootc versions a boot entry with: VERSION_ID, else
// VERSION; "" when neither is set.
func (o OSRelease) Version() string { return o.first("VERSION_ID", "VERSION") }

// BootLabel is composefs-rs's label of a UKI: the pretty name and, when
// there is one, a space and the version; "" without a name.
func (o OSRelease) BootLabel() string {
	name := o.PrettyName()
	if name == "" {
		return ""
	}
	if v := o.Version(); v != "" {
		return name + " " + v
	}
	return name
}
