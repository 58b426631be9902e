package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnnamedLink(t *testing.T) {
	dir := t.TempDir()
	f, ok, err := OpenUnnamed(unix.AT_FDCWD, dir, 0o600)
	if err != nil || !ok {
		t.Skipf("no O_TMPFILE in %s: %v", dir, err)
	}
	defer f.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("an unnamed file shows in the directory: %v", entries)
	}
	f.WriteString("complete")
	dst := filepath.Join(dir, "dst")
	if err := Link(f, unix.AT_FDCWD, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "complete" {
		t.Errorf("linked file holds %q", b)
	}
	if err := Link(f, unix.AT_FDCWD, dst); !errors.Is(err, unix.EEXIST) {
		t.Errorf("linking over an existing name: %v, want EEXIST", err)
	}
	if _, _, err := OpenUnnamed(unix.AT_FDCWD, filepath.Join(dir, "missing"), 0o600); err == nil {
		t.Error("O_TMPFILE in a missing directory succeeded")
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	path := filepath.Join(dir, "config")
	os.WriteFile(path, []byte("old"), 0o600)
	if err := WriteFile(tmp, path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != "new" || err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("content %q, mode %v, %v", b, fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := WriteFile("", filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
