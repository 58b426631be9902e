package dedupe

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
)

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func writeFile(t *testing.T, p string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func sharedAll(t *testing.T, f *os.File) bool {
	t.Helper()
	shared, total, err := reflink.SharedBytes(f)
	if err != nil {
		t.Fatal(err)
	}
	return total > 0 && shared == total
}

func TestFile(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	// Larger than one request, with a tail that is not block aligned.
	data := randBytes(1, maxChunk+3*4096+123)
	a := writeFile(t, fs.Path("a"), data)
	b := writeFile(t, fs.Path("b"), data)
	if sharedAll(t, a) || sharedAll(t, b) {
		t.Fatal("files written separately already share extents")
	}
	n, err := File(b, a)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("File: %d bytes, %v", n, err)
	}
	if !sharedAll(t, a) || !sharedAll(t, b) {
		t.Error("after File the extents are not all shared")
	}
	if got, _ := os.ReadFile(fs.Path("b")); !bytes.Equal(got, data) {
		t.Error("content changed")
	}

	// One byte differs: the kernel refuses, nothing changes.
	other := append([]byte(nil), data...)
	other[len(other)-1] ^= 1
	c := writeFile(t, fs.Path("c"), other)
	if _, err := File(c, a); !errors.Is(err, ErrDiffers) {
		t.Errorf("different bytes: %v, want ErrDiffers", err)
	}
	if got, _ := os.ReadFile(fs.Path("c")); !bytes.Equal(got, other) {
		t.Error("refused dedupe changed the content")
	}
	d := writeFile(t, fs.Path("d"), data[:100])
	if _, err := File(d, a); !errors.Is(err, ErrDiffers) {
		t.Errorf("different sizes: %v, want ErrDiffers", err)
	}
}

func TestFileExt4(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.Ext4(t, 0)
	data := randBytes(2, 10000)
	a := writeFile(t, fs.Path("a"), data)
	b := writeFile(t, fs.Path("b"), data)
	if _, err := File(b, a); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ext4: %v, want ErrUnsupported", err)
	}
}

// TestCommit commits a tree with ostree itself, puts some of its files in
// a composefs repository, and checks that exactly those objects end up
// sharing extents, that ostree fsck still passes, and that a second run
// reads nothing it already did.
func TestCommit(t *testing.T) {
	testfs.RequirePrivileged(t)
	ostreeBin := testfs.RequireTool(t, "ostree")
	fs := testfs.XFS(t, 0)
	tree := fs.Path("tree")
	files := map[string][]byte{
		"usr/bin/big":      randBytes(3, 300000),
		"usr/lib/mid":      randBytes(4, 5000),
		"usr/lib/same":     randBytes(4, 5000), // same bytes, one object
		"usr/share/tiny":   []byte("64 bytes or less: inline in composefs"),
		"usr/share/absent": randBytes(5, 9000), // not in composefs
	}
	for p, data := range files {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), data, 0o644)
	}
	os.Symlink("bin/big", filepath.Join(tree, "usr/link"))
	repoPath := fs.Path("repo")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ostreeBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ostree %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "--repo="+repoPath, "--mode=bare")
	commit := run("commit", "--repo="+repoPath, "--branch=classic", "--tree=dir="+tree)

	cfs, err := composefs.Create(fs.Path("composefs"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"usr/bin/big", "usr/lib/mid"} {
		if _, _, _, err := cfs.WriteObject(bytes.NewReader(files[p])); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfs.Close(); err != nil {
		t.Fatal(err)
	}
	cfs, err = composefs.Open(fs.Path("composefs"))
	if err != nil {
		t.Fatal(err)
	}
	defer cfs.Close()

	// ostree reflinks /usr/etc into each deployment's /etc: an object
	// whose extents are shared with some other file still needs sharing
	// with composefs.
	big := filepath.Join(checkoutDir(t, run, repoPath, commit, fs.Path("co0")), "usr/bin/big")
	if _, err := reflink.Clone(fs.Path("etc-copy"), big, reflink.Always); err != nil {
		t.Fatal(err)
	}

	dedupeOnce := func() Stats {
		t.Helper()
		repo, err := ostree.Open(repoPath)
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		st, err := Commit(context.Background(), repo, cfs, commit)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := dedupeOnce()
	want := Stats{Objects: 4, Deduped: 2, DedupedBytes: 305000, Small: 1, Missing: 1, MissingBytes: 9000}
	if st != want {
		t.Errorf("first run: %+v\nwant %+v", st, want)
	}
	run("fsck", "--repo="+repoPath)
	checkout := fs.Path("checkout")
	run("checkout", "--repo="+repoPath, "-H", commit, checkout)
	for p, data := range files {
		got, err := os.ReadFile(filepath.Join(checkout, p))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: content changed (%v)", p, err)
		}
		f, _ := os.Open(filepath.Join(checkout, p))
		shared := sharedAll(t, f)
		f.Close()
		if wantShared := p != "usr/share/absent" && p != "usr/share/tiny"; shared != wantShared {
			t.Errorf("%s: shared %v, want %v", p, shared, wantShared)
		}
	}
	st = dedupeOnce()
	want = Stats{Objects: 4, Shared: 2, SharedBytes: 305000, Small: 1, Missing: 1, MissingBytes: 9000}
	if st != want {
		t.Errorf("second run: %+v\nwant %+v", st, want)
	}
}

func checkoutDir(t *testing.T, run func(...string) string, repo, commit, dir string) string {
	t.Helper()
	run("checkout", "--repo="+repo, "-H", commit, dir)
	return dir
}

// TestSmallFiles: files of 64 bytes or less in another store's tree come
// to share the block of the commit's object with the same bytes; other
// files are left alone, the bytes stay, ostree fsck passes, and a second
// run finds them shared.
func TestSmallFiles(t *testing.T) {
	testfs.RequirePrivileged(t)
	ostreeBin := testfs.RequireTool(t, "ostree")
	fs := testfs.XFS(t, 0)
	tree := fs.Path("tree")
	files := map[string][]byte{
		"usr/share/tiny":  []byte("64 bytes or less: inline in composefs"),
		"usr/share/tiny2": []byte("another small one\n"),
		"usr/lib/big":     randBytes(6, 5000),
	}
	for p, data := range files {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), data, 0o644)
	}
	repoPath := fs.Path("repo")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ostreeBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ostree %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "--repo="+repoPath, "--mode=bare")
	commit := run("commit", "--repo="+repoPath, "--branch=classic", "--tree=dir="+tree)

	// A layer directory of containers-storage: the same small files under
	// other names, one whose bytes no object has, an empty one and a big
	// one, none of them sharing anything yet.
	layer := fs.Path("layer/diff")
	os.MkdirAll(filepath.Join(layer, "a/b"), 0o755)
	put := map[string][]byte{
		"tiny":      files["usr/share/tiny"],
		"a/b/tiny2": files["usr/share/tiny2"],
		"a/copy":    files["usr/share/tiny"],
		"a/other":   []byte("bytes of no object"),
		"empty":     nil,
		"big":       files["usr/lib/big"],
	}
	for p, data := range put {
		os.WriteFile(filepath.Join(layer, p), data, 0o644)
	}
	once := func() SmallStats {
		t.Helper()
		repo, err := ostree.Open(repoPath)
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		st, err := SmallFiles(context.Background(), repo, commit, []string{layer})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st, want := once(), (SmallStats{Files: 4, Deduped: 3, Missing: 1}); st != want {
		t.Errorf("first run: %+v, want %+v", st, want)
	}
	checkout := fs.Path("checkout")
	run("checkout", "--repo="+repoPath, "-H", commit, checkout)
	block := func(p string) uint64 {
		t.Helper()
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ext, err := reflink.Extents(f)
		if err != nil || len(ext) != 1 {
			t.Fatalf("%s: extents %v (%v)", p, ext, err)
		}
		return ext[0].Physical
	}
	for p, obj := range map[string]string{"tiny": "usr/share/tiny", "a/copy": "usr/share/tiny", "a/b/tiny2": "usr/share/tiny2"} {
		if a, b := block(filepath.Join(layer, p)), block(filepath.Join(checkout, obj)); a != b {
			t.Errorf("%s: block %d, its object's %d", p, a, b)
		}
	}
	if block(filepath.Join(layer, "a/other")) == block(filepath.Join(checkout, "usr/share/tiny")) {
		t.Error("a file of other bytes shares the object's block")
	}
	for p, data := range put {
		if got, err := os.ReadFile(filepath.Join(layer, p)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: content changed (%v)", p, err)
		}
	}
	run("fsck", "--repo="+repoPath)
	if st, want := once(), (SmallStats{Files: 4, Shared: 3, Missing: 1}); st != want {
		t.Errorf("second run: %+v, want %+v", st, want)
	}
}
