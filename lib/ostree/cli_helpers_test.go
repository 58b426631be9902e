package ostree

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ostreeCLI runs the ostree oracle and fails the test on a non-zero exit.
func ostreeCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ostreeCLIResult(args...)
	if err != nil {
		t.Fatalf("ostree %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func ostreeCLIResult(args ...string) (string, error) {
	cmd := exec.Command("ostree", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func listXattrs(path string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	m := map[string][]byte{}
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		v := make([]byte, vsize)
		if vsize > 0 {
			if vsize, err = unix.Lgetxattr(path, name, v); err != nil {
				return nil, err
			}
		}
		m[name] = v[:vsize]
	}
	return m, nil
}

// commitDirWithLibrary walks dir the way `ostree commit --tree=dir=` does
// and writes it with this package only; it returns the root.
func commitDirWithLibrary(t *testing.T, repo *Repo, dir string) DirRef {
	t.Helper()
	w := repo.NewTreeWriter()
	var walk func(path, name string) error
	walk = func(path, name string) error {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		xattrs, err := listXattrs(path)
		if err != nil {
			return err
		}
		perm := st.Mode & permMask
		switch st.Mode & sIFMT {
		case sIFDIR:
			if err := w.EnterDir(name, DirMeta{UID: st.Uid, GID: st.Gid, Mode: perm, Xattrs: xattrs}); err != nil {
				return err
			}
			ents, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if err := walk(filepath.Join(path, e.Name()), e.Name()); err != nil {
					return err
				}
			}
			_, err = w.LeaveDir()
			return err
		case sIFREG:
			meta := FileMeta{UID: st.Uid, GID: st.Gid, Mode: perm, Xattrs: xattrs}
			csum, _, err := repo.WriteFileObject(meta, func(tmp *os.File) error {
				src, err := os.Open(path)
				if err != nil {
					return err
				}
				defer src.Close()
				// FICLONE where the filesystem shares extents, a copy where not:
				// the same choice cfs-clone makes.
				if err := unix.IoctlFileClone(int(tmp.Fd()), int(src.Fd())); err == nil {
					return nil
				}
				_, err = io.Copy(tmp, src)
				return err
			}, "", 0)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return w.AddFile(name, csum)
		case sIFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			csum, _, err := repo.WriteSymlinkObject(FileMeta{UID: st.Uid, GID: st.Gid, Xattrs: xattrs}, target)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return w.AddFile(name, csum)
		}
		return fmt.Errorf("%s: unsupported file type %#o", path, st.Mode&sIFMT)
	}
	if err := walk(dir, ""); err != nil {
		t.Fatal(err)
	}
	root, ok := w.Root()
	if !ok {
		t.Fatal("tree writer did not finish the root")
	}
	return root
}

// treeEntry is everything about a path that a checkout must reproduce.
type treeEntry struct {
	typ      uint32
	mode     uint32
	uid, gid uint32
	xattrs   string
	target   string
	content  string // sha256-free: small test trees, compare bytes directly
}

func snapshotTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		x, err := listXattrs(path)
		if err != nil {
			return err
		}
		var names []string
		for k, v := range x {
			if len(v) > 0 { // ostree cannot represent empty values
				names = append(names, k)
			}
		}
		sort.Strings(names)
		var xs strings.Builder
		for _, k := range names {
			fmt.Fprintf(&xs, "%s=%q;", k, x[k])
		}
		e := treeEntry{typ: st.Mode & sIFMT, mode: st.Mode & permMask, uid: st.Uid, gid: st.Gid, xattrs: xs.String()}
		switch e.typ {
		case sIFLNK:
			e.target, _ = os.Readlink(path)
			e.mode = 0 // lstat's 0777 is implied
		case sIFREG:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			e.content = string(b)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]treeEntry, label string) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %s missing", label, p)
			continue
		}
		if g != w {
			t.Errorf("%s: %s differs:\n got %+v\nwant %+v", label, p, short(g), short(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %s", label, p)
		}
	}
}

func short(e treeEntry) treeEntry {
	if len(e.content) > 32 {
		e.content = fmt.Sprintf("%d bytes %q...", len(e.content), e.content[:16])
	}
	return e
}
