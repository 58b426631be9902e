// Package kargsd reads the kernel arguments a bootc image ships in
// /usr/lib/bootc/kargs.d, as bootc does: the installer puts them on the
// first deployment's command line, and an upgrade of a composefs-native
// host adds those the new image brings and drops those only the old one
// had.
package kargsd

import (
	"errors"
	"fmt"
	"path"
	"runtime"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Dir is where an image ships the kernel arguments it needs
// (bootc's kargs.d): *.toml files with `kargs = [...]` and an optional
// `match-architectures = [...]`.
const Dir = "/usr/lib/bootc/kargs.d"

// File is one file of Dir.
type File struct {
	Name string // base name
	Data []byte
}

// Parse returns the kernel arguments of the kargs.d files as bootc
// reads them: files ending in .toml, in byte order of their names; a file
// whose match-architectures lacks this machine (Rust's architecture names)
// is skipped; each array element may hold several arguments separated by
// spaces; `kargs` is required and any other key is an error (bootc's
// deny_unknown_fields), named with the file.
func Parse(files []File) ([]string, error) {
	files = append([]File(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	var out []string
	for _, f := range files {
		if path.Ext(f.Name) != ".toml" {
			continue
		}
		where := path.Join(Dir, f.Name)
		var doc map[string]any
		if _, err := toml.Decode(string(f.Data), &doc); err != nil {
			var perr toml.ParseError
			if errors.As(err, &perr) {
				return nil, fmt.Errorf("%s: malformed TOML: line %d: %s", where, perr.Position.Line, perr.Message)
			}
			return nil, fmt.Errorf("%s: malformed TOML: %s", where, strings.ReplaceAll(err.Error(), "\n", " "))
		}
		for k := range doc {
			if k != "kargs" && k != "match-architectures" {
				return nil, fmt.Errorf("%s: unknown key %q", where, k)
			}
		}
		kargs, err := stringList(doc, "kargs", where)
		if err != nil {
			return nil, err
		}
		if _, ok := doc["kargs"]; !ok {
			return nil, fmt.Errorf("%s: missing key \"kargs\"", where)
		}
		if _, ok := doc["match-architectures"]; ok {
			archs, err := stringList(doc, "match-architectures", where)
			if err != nil {
				return nil, err
			}
			if !containsArch(archs) {
				continue
			}
		}
		for _, k := range kargs {
			out = append(out, SplitCmdline(k)...)
		}
	}
	return out, nil
}

func stringList(doc map[string]any, key, where string) ([]string, error) {
	raw, ok := doc[key]
	if !ok {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s must be an array of strings", where, key)
	}
	out := make([]string, 0, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: %s[%d] must be a string", where, key, i)
		}
		out = append(out, s)
	}
	return out, nil
}

// RustArch is this machine's architecture as Rust's
// std::env::consts::ARCH names it, which bootc's match-architectures uses.
func RustArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "ppc64le", "ppc64":
		return "powerpc64"
	case "386":
		return "x86"
	case "loong64":
		return "loongarch64"
	}
	return runtime.GOARCH
}

func containsArch(archs []string) bool {
	me := RustArch()
	for _, a := range archs {
		if a == me {
			return true
		}
	}
	return false
}

// SplitCmdline splits a kernel command line into arguments the way the
// kernel does: at spaces outside double quotes (quotes are kept).
func SplitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t' || r == '\n') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
