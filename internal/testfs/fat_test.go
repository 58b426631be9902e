package testfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFATProblems: the checker passes a tree FAT holds and names each
// thing FAT cannot hold.
func TestFATProblems(t *testing.T) {
	dir := t.TempDir()
	mk := func(p string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("EFI/Linux/bootc/bootc_composefs-ab.efi")
	mk("loader/entries/bootc_fedora-42-1.conf")
	mk(".tmp-x")
	if got := FATProblems(dir); len(got) != 0 {
		t.Fatalf("a FAT-safe tree: %v", got)
	}
	mk("loader/entries/Bootc_Fedora-42-1.conf")
	mk("loader/bad:name")
	mk("loader/trailing.")
	os.Symlink("entries", filepath.Join(dir, "loader/link"))
	os.Link(filepath.Join(dir, ".tmp-x"), filepath.Join(dir, ".tmp-y"))
	unix.Chmod(filepath.Join(dir, "EFI/Linux/bootc/bootc_composefs-ab.efi"), 0o4755)
	xattrs := unix.Setxattr(filepath.Join(dir, "loader/entries/bootc_fedora-42-1.conf"), "user.cfs", []byte("1"), 0) == nil
	got := strings.Join(FATProblems(dir), "\n")
	want := []string{"differ only in case", `character ':'`, "ends in a space or a dot", "loader/link: neither", ".tmp-x: 2 hard links", "set-id or sticky"}
	if xattrs {
		want = append(want, "extended attribute user.cfs")
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in:\n%s", w, got)
		}
	}
}
