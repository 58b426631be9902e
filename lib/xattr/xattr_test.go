package xattr

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestList(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(f, "user.a", []byte("1"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	big := make([]byte, 3000)
	if err := unix.Lsetxattr(f, "user.big", big, 0); err != nil {
		t.Fatal(err)
	}
	got, err := List(f)
	if err != nil || len(got) != 2 || string(got["user.a"]) != "1" || len(got["user.big"]) != 3000 {
		t.Fatalf("List(file) = %v, %v", got, err)
	}
	// A symlink's own attributes, not its target's.
	l := filepath.Join(dir, "l")
	if err := os.Symlink("f", l); err != nil {
		t.Fatal(err)
	}
	if got, err := List(l); err != nil || len(got) != 0 {
		t.Fatalf("List(symlink) = %v, %v; want the link's own (none)", got, err)
	}
	if v, err := Get(f, "user.a"); err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if got, err := ListFD(fd); err != nil || len(got) != 2 || string(got["user.a"]) != "1" || len(got["user.big"]) != 3000 {
		t.Fatalf("ListFD(file) = %v, %v", got, err)
	}
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d)
	if got, err := ListFD(d); err != nil || len(got) != 0 {
		t.Fatalf("ListFD(directory without xattrs) = %v, %v", got, err)
	}
	if _, err := List(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("List of a missing file succeeded")
	}
}
