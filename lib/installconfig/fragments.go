// Package installconfig reads bootc's install configuration: TOML fragments
// in bootc/install/ under /usr/lib, /usr/local/lib, /etc and /run, merged
// with bootc's rules (liboverdrop). cfs interprets what bootc's
// "install to-filesystem" honours: [install] kargs, karg-deletes,
// match-architectures, stateroot, root-mount-spec, boot-mount-spec,
// bootloader, enforce-container-sigpolicy, [install.ostree] and
// [install.storage]; the keys for install to-disk (root-fs-type,
// [install.filesystem], block) and for bootloader installation
// ([install.bootupd]) are only type-checked, as bootc's parse checks them,
// and printed (Config.PrintJSON).
package installconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dirs are the search directories, lowest precedence first.
var Dirs = []string{"usr/lib", "usr/local/lib", "etc", "run"}

// Subdir is where fragments live inside each search directory.
const Subdir = "bootc/install"

// Fragments lists the fragments that take part in the merge, in merge
// order (by basename), as liboverdrop::scan does: *.toml only, dotfiles
// skipped; for one basename the later directory wins; a symlink to
// /dev/null masks that basename everywhere below it.
func Fragments(root string) ([]string, error) { return FragmentsOf(root) }

// FragmentsOf is Fragments over several trees scanned as one, each tree
// above the ones before it: bootc installing an image from outside it
// (--source-imgref) merges the image's configuration with the installing
// host's, the host's winning, so a host fragment can override or mask
// (/dev/null) one the image ships.
func FragmentsOf(roots ...string) ([]string, error) {
	var dirs []string
	for _, root := range roots {
		for _, d := range Dirs {
			dirs = append(dirs, filepath.Join(root, d, Subdir))
		}
	}
	chosen := map[string]string{} // basename -> path, "" when masked
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".toml") {
				continue
			}
			path := filepath.Join(dir, name)
			if target, err := os.Readlink(path); err == nil && target == "/dev/null" {
				chosen[name] = ""
				continue
			}
			fi, err := os.Stat(path)
			if err != nil {
				return nil, err
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			chosen[name] = path
		}
	}
	names := make([]string, 0, len(chosen))
	for name, path := range chosen {
		if path != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = chosen[n]
	}
	return out, nil
}

func errorf(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
}
