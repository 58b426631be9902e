package installconfig

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/cfs-project/cfs/lib/sysroot"
)

// Config is the merged install configuration, as far as cfs reads it.
type Config struct {
	// Unified is [install.storage] unified; "" when no fragment sets it
	// (bootc's default, disabled).
	Unified sysroot.Unified
	// UnifiedFrom is the fragment that set Unified.
	UnifiedFrom string
	// Kargs is [install] kargs of every fragment, appended in merge order
	// (bootc appends lists): kernel arguments an install adds.
	Kargs []string
	// KargDeletes is [install] karg-deletes of every fragment, appended
	// in merge order: arguments an ostree install removes after the
	// image's kargs.d, before --karg (key=value removes that exact
	// argument, a bare key every argument with that key).
	KargDeletes []string
	// Stateroot, RootMountSpec, BootMountSpec and Bootloader are
	// [install] stateroot, root-mount-spec, boot-mount-spec and
	// bootloader, nil when no fragment sets them; the last value wins.
	// A command-line option given wins over them, as in bootc. An empty
	// mount spec means "no such argument".
	Stateroot     *string
	RootMountSpec *string
	BootMountSpec *string
	Bootloader    *string
	// BLSAppendExceptDefault is [install.ostree] bls-append-except-default,
	// set as the ostree repository's sysroot.bls-append-except-default.
	BLSAppendExceptDefault *string
	// EnforceContainerSigpolicy is [install] enforce-container-sigpolicy,
	// nil when no fragment sets it; the last value wins. bootc's
	// --enforce-container-sigpolicy turns it on whatever it says.
	EnforceContainerSigpolicy *bool
	// EnforceFrom is the fragment that set EnforceContainerSigpolicy.
	EnforceFrom string
	// Fragments are the files merged, in order; skipped ones (wrong
	// architecture) are not listed.
	Fragments []string

	// merged is every fragment's [install] merged as bootc merges them,
	// for PrintJSON; nil when no fragment has an [install] table.
	merged map[string]any
}

// Effective is Unified with bootc's default applied.
func (c *Config) Effective() sysroot.Unified {
	if c.Unified == "" {
		return sysroot.UnifiedDisabled
	}
	return c.Unified
}

// Load merges the fragments under root ("/" for the running system).
func Load(root string) (*Config, error) { return LoadOf(root) }

// LoadOf merges the fragments of several trees scanned as one, later trees
// winning (FragmentsOf).
func LoadOf(roots ...string) (*Config, error) {
	paths, err := FragmentsOf(roots...)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		f, err := Parse(p, data)
		if err != nil {
			return nil, err
		}
		if f.Skip {
			continue
		}
		c.Fragments = append(c.Fragments, p)
		if f.install != nil {
			if c.merged == nil {
				c.merged = map[string]any{}
				if a, ok := f.install["match-architectures"]; ok {
					c.merged["match-architectures"] = a
				}
			}
			merge(c.merged, f.install)
		}
		if f.Unified != "" { // scalars: the last value wins
			c.Unified, c.UnifiedFrom = f.Unified, p
		}
		if f.EnforceContainerSigpolicy != nil {
			c.EnforceContainerSigpolicy, c.EnforceFrom = f.EnforceContainerSigpolicy, p
		}
		for _, sc := range []struct{ dst, src **string }{
			{&c.Stateroot, &f.Stateroot}, {&c.RootMountSpec, &f.RootMountSpec}, {&c.BootMountSpec, &f.BootMountSpec},
			{&c.Bootloader, &f.Bootloader}, {&c.BLSAppendExceptDefault, &f.BLSAppendExceptDefault},
		} {
			if *sc.src != nil {
				*sc.dst = *sc.src
			}
		}
		c.Kargs = append(c.Kargs, f.Kargs...)
		c.KargDeletes = append(c.KargDeletes, f.KargDeletes...)
	}
	return c, nil
}

// Fragment is what one file says.
type Fragment struct {
	Unified sysroot.Unified // "" when the file does not set it
	Kargs   []string        // [install] kargs
	// KargDeletes is [install] karg-deletes.
	KargDeletes []string
	// The scalars of Config, nil when the file does not set them.
	Stateroot, RootMountSpec, BootMountSpec, Bootloader, BLSAppendExceptDefault *string
	Skip                                                                        bool // match-architectures excludes this machine
	// EnforceContainerSigpolicy is [install] enforce-container-sigpolicy.
	EnforceContainerSigpolicy *bool

	install map[string]any // the [install] table, validated
}

// Bootloaders are the values bootc's [install] bootloader takes.
var Bootloaders = []string{"grub", "grub-cc", "systemd", "none"}

// Parse reads one fragment; path is only for messages.
func Parse(path string, data []byte) (Fragment, error) {
	var f Fragment
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return f, errorf(path, "malformed TOML: line %d: %s", perr.Position.Line, perr.Message)
		}
		return f, errorf(path, "malformed TOML: %v", oneLine(err))
	}
	install, ok := doc["install"].(map[string]any)
	if !ok {
		return f, nil // no [install] (or not a table): nothing for us
	}
	if err := checkOther(path, install); err != nil {
		return f, err
	}
	if archs, ok := install["match-architectures"].([]any); ok && !archMatches(archs) {
		f.Skip = true
		return f, nil
	}
	f.install = install
	for _, k := range []struct {
		key string
		dst *[]string
	}{{"kargs", &f.Kargs}, {"karg-deletes", &f.KargDeletes}} {
		raw, ok := install[k.key]
		if !ok {
			continue
		}
		list, ok := raw.([]any)
		if !ok {
			return f, errorf(path, "install.%s: must be an array of strings, not %s", k.key, tomlType(raw))
		}
		for i, v := range list {
			s, ok := v.(string)
			if !ok {
				return f, errorf(path, "install.%s[%d]: must be a string, not %s", k.key, i, tomlType(v))
			}
			*k.dst = append(*k.dst, s)
		}
	}
	for _, k := range []struct {
		key string
		dst **string
	}{{"stateroot", &f.Stateroot}, {"root-mount-spec", &f.RootMountSpec}, {"boot-mount-spec", &f.BootMountSpec}, {"bootloader", &f.Bootloader}} {
		raw, ok := install[k.key]
		if !ok {
			continue
		}
		s, ok := raw.(string)
		if !ok {
			return f, errorf(path, "install.%s: must be a string, not %s", k.key, tomlType(raw))
		}
		*k.dst = &s
	}
	if b, ok := install["enforce-container-sigpolicy"].(bool); ok { // its type checked by checkOther
		f.EnforceContainerSigpolicy = &b
	}
	if f.Bootloader != nil && !slices.Contains(Bootloaders, *f.Bootloader) {
		return f, errorf(path, "install.bootloader: %q is not one of %s", *f.Bootloader, strings.Join(Bootloaders, ", "))
	}
	if f.Stateroot != nil && !validStateroot(*f.Stateroot) {
		return f, errorf(path, "install.stateroot: %q is not a valid stateroot name", *f.Stateroot)
	}
	if raw, ok := install["ostree"]; ok {
		ot, ok := raw.(map[string]any)
		if !ok {
			return f, errorf(path, "install.ostree: must be a table, not %s", tomlType(raw))
		}
		for key, val := range ot {
			if key != "bls-append-except-default" {
				return f, errorf(path, "install.ostree.%s: unknown key", key)
			}
			s, ok := val.(string)
			if !ok {
				return f, errorf(path, "install.ostree.%s: must be a string, not %s", key, tomlType(val))
			}
			f.BLSAppendExceptDefault = &s
		}
	}
	raw, present := install["storage"]
	if !present {
		return f, nil
	}
	storage, ok := raw.(map[string]any)
	if !ok {
		return f, errorf(path, "install.storage: must be a table, not %s", tomlType(raw))
	}
	for key, val := range storage {
		if key != "unified" {
			// bootc's structs deny unknown fields: a typo here would be
			// a hard error at install time, so say so now.
			return f, errorf(path, "install.storage.%s: unknown key", key)
		}
		s, ok := val.(string)
		if !ok {
			return f, errorf(path, "install.storage.unified: must be a string, not %s", tomlType(val))
		}
		u, err := sysroot.ParseUnified(s)
		if err != nil {
			return f, errorf(path, "install.storage.unified: %v", err)
		}
		f.Unified = u
	}
	return f, nil
}

// validStateroot: ostree admin os-init makes ostree/deploy/NAME, so a
// name must be one path component (bootc hands it to ostree unchecked,
// which fails half-way; refusing it here fails before anything is written).
func validStateroot(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// archMatches: bootc skips a fragment whose match-architectures lacks
// Rust's std::env::consts::ARCH.
func archMatches(archs []any) bool {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "powerpc64", "ppc64": "powerpc64",
		"s390x": "s390x", "riscv64": "riscv64", "386": "x86", "arm": "arm", "loong64": "loongarch64"}[runtime.GOARCH]
	for _, a := range archs {
		if s, ok := a.(string); ok && s == arch {
			return true
		}
	}
	return false
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
