package ostree

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestTreeWriter(t *testing.T) {
	repo, err := Create(filepath.Join(t.TempDir(), "repo"), ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const a, b = "afd2231b1fa521726d822282338af4736b56a2a4b3f121b5e2446458bb8c4e10", "cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e"

	// Entries in reverse order must give the tree that sorted entries give.
	build := func(names []string) DirRef {
		w := repo.NewTreeWriter()
		must(w.EnterDir("ignored-for-root", DirMeta{Mode: 0o755}))
		for _, n := range names {
			must(w.EnterDir("d"+n, DirMeta{Mode: 0o700, UID: 3}))
			must(w.AddFile("x", a))
			_, err := w.LeaveDir()
			must(err)
			must(w.AddFile(n, b))
		}
		if w.Depth() != 1 {
			t.Fatalf("depth %d", w.Depth())
		}
		ref, err := w.LeaveDir()
		must(err)
		if root, ok := w.Root(); !ok || root != ref {
			t.Fatal("Root() disagrees with the last LeaveDir")
		}
		return ref
	}
	sorted := build([]string{"A", "B", "a", "a-b", "a.b", "b"})
	reversed := build([]string{"b", "a.b", "a-b", "a", "B", "A"})
	if sorted != reversed {
		t.Errorf("entry order changed the tree: %v vs %v", sorted, reversed)
	}
	tree, err := repo.ReadDirTree(sorted.Tree)
	must(err)
	var names []string
	for _, f := range tree.Files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, " "); got != "A B a a-b a.b b" {
		t.Errorf("file order %q", got)
	}
	meta, err := repo.ReadDirMeta(tree.Dirs[0].MetaChecksum)
	must(err)
	if meta.UID != 3 || meta.Mode != 0o700 {
		t.Errorf("subdir meta %+v", meta)
	}

	// Errors name the path.
	w := repo.NewTreeWriter()
	must(w.EnterDir("", DirMeta{Mode: 0o755}))
	must(w.EnterDir("usr", DirMeta{Mode: 0o755}))
	must(w.AddFile("same", a))
	must(w.AddFile("same", b))
	if _, err := w.LeaveDir(); err == nil || !strings.Contains(err.Error(), "/usr") || !strings.Contains(err.Error(), "same") {
		t.Errorf("duplicate: %v", err)
	}
	if err := w.AddFile("a/b", a); err == nil || !strings.Contains(err.Error(), "/usr/a/b") {
		t.Errorf("slash in name: %v", err)
	}
	if err := w.AddFile("ok", "nothex"); err == nil {
		t.Error("bad checksum accepted")
	}
	if _, err := (&TreeWriter{repo: repo}).LeaveDir(); err == nil {
		t.Error("LeaveDir with nothing open")
	}
}
