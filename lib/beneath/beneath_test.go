package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRefusesSymlinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "a/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b", filepath.Join(root, "a/rel")); err != nil {
		t.Fatal(err)
	}
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)

	for _, open := range map[string]func(string) (int, error){
		"OpenDir":  func(p string) (int, error) { return OpenDir(rfd, p) },
		"MkdirAll": func(p string) (int, error) { return MkdirAll(rfd, p, 0o755) },
		"walk": func(p string) (int, error) {
			ps, err := components(p)
			if err != nil {
				return -1, err
			}
			return walk(rfd, ps, false, 0)
		},
	} {
		fd, err := open("a/b")
		if err != nil {
			t.Fatalf("a/b: %v", err)
		}
		unix.Close(fd)
		for _, p := range []string{"a/link", "a/link/x", "a/rel"} {
			if fd, err := open(p); !errors.Is(err, ErrSymlink) {
				if err == nil {
					unix.Close(fd)
				}
				t.Errorf("%s: %v, want ErrSymlink", p, err)
			}
		}
		for _, p := range []string{"../x", "a/../b", "/etc", "a//b"} {
			if fd, err := open(p); err == nil {
				unix.Close(fd)
				t.Errorf("%s: opened", p)
			}
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("something was created outside: %v", entries)
	}
	fd, err := MkdirAll(rfd, "a/b/c/d", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if st, err := os.Stat(filepath.Join(root, "a/b/c/d")); err != nil || !st.IsDir() {
		t.Errorf("MkdirAll did not create a/b/c/d: %v", err)
	}
}
