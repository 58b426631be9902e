package testfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"golang.org/x/sys/unix"
)

// CheckFATSafe fails t unless the tree at dir is one a FAT filesystem (an
// EFI system partition) can hold as it is, so that tests on a tmpfs or
// ext4 stand-in ESP (kernels without vfat) still catch what a real ESP
// would refuse or lose:
//   - only directories and regular files: FAT has no symlinks, devices,
//     fifos or sockets (symlink and mknod fail with EPERM);
//   - no hard links (link fails with EPERM);
//   - no extended attributes (FAT has none; security.selinux is the
//     host's labelling, which a vfat mount gives by context=);
//   - no set-user-ID, set-group-ID or sticky bits (FAT's setattr
//     refuses them);
//   - names valid as FAT long names: no control characters, none of
//     " * / : < > ? \ |, not ending in a space or a dot, at most 255
//     UTF-16 units;
//   - names unique per directory without regard to case (FAT compares
//     them case-insensitively).
//
// lost+found at the top (an ext4 stand-in's) is skipped.
func CheckFATSafe(t testing.TB, dir string) {
	t.Helper()
	for _, p := range FATProblems(dir) {
		t.Errorf("not FAT-safe: %s", p)
	}
}

// FATProblems lists what CheckFATSafe would report, one line each.
func FATProblems(dir string) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "lost+found" && d.IsDir() {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := checkNames(p, rel, add); err != nil {
				return err
			}
		case unix.S_IFREG:
			if st.Nlink != 1 {
				add("%s: %d hard links", rel, st.Nlink)
			}
		default:
			add("%s: neither a directory nor a regular file (mode %o)", rel, st.Mode)
			return nil
		}
		if st.Mode&(unix.S_ISUID|unix.S_ISGID|unix.S_ISVTX) != 0 {
			add("%s: mode %o has set-id or sticky bits", rel, st.Mode&0o7777)
		}
		names, err := listXattrs(p)
		if err != nil {
			return err
		}
		for _, n := range names {
			if n != "security.selinux" {
				add("%s: extended attribute %s", rel, n)
			}
		}
		return nil
	})
	if err != nil {
		add("walking %s: %v", dir, err)
	}
	return out
}

func checkNames(dir, rel string, add func(string, ...any)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	seen := map[string]string{}
	for _, e := range ents {
		n := e.Name()
		if why := fatNameProblem(n); why != "" {
			add("%s: name %q: %s", filepath.Join(rel, n), n, why)
		}
		fold := strings.ToUpper(n)
		if other, ok := seen[fold]; ok {
			add("%s: %q and %q differ only in case", rel, other, n)
		}
		seen[fold] = n
	}
	return nil
}

func fatNameProblem(n string) string {
	for _, r := range n {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Sprintf("character %q", r)
		}
	}
	if strings.HasSuffix(n, " ") || strings.HasSuffix(n, ".") {
		return "ends in a space or a dot"
	}
	if l := len(utf16.Encode([]rune(n))); l > 255 {
		return fmt.Sprintf("%d UTF-16 units, more than 255", l)
	}
	return ""
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr %s: %w", p, err)
		}
		var out []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				out = append(out, string(b))
			}
		}
		return out, nil
	}
}
