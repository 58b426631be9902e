package sysroot

import "strings"

// Cmdline is what the kernel command line says about the booted deployment.
type Cmdline struct {
	Ostree         string // ostree=/ostree/boot.N/<stateroot>/<bootcsum>/<bootserial>
	Composefs      string // composefs=<verity>, without the "?"
	VerityOptional bool   // composefs=?<verity>: fs-verity not enforced
}

// ParseCmdline splits a kernel command line as the kernel does (blanks
// separate words, double quotes group them) and picks out the ostree= and
// composefs= arguments. The last occurrence wins, as for the kernel.
func ParseCmdline(s string) Cmdline {
	var c Cmdline
	for _, arg := range splitCmdline(s) {
		key, val, ok := strings.Cut(arg, "=")
		if !ok {
			continue
		}
		switch key {
		case "ostree":
			c.Ostree = val
		case "composefs":
			c.Composefs, c.VerityOptional = strings.TrimPrefix(val, "?"), strings.HasPrefix(val, "?")
		}
	}
	return c
}

func splitCmdline(s string) []string {
	var args []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}
