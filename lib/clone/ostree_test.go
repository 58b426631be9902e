package clone

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// cloneFixture is a list of files held in srcDir, each with its
// composefs id, on one loop XFS beside an empty bare repository.
type cloneFixture struct {
	fs      *testfs.FS
	list    []byte
	entries []*stream.Entry
	bytes   int64
}

// With repoMode not 0, the files are the objects of a composefs
// repository (meta.json, objects/XX/rest named by the id) whose directory
// has that mode, and the image record names it.
func newCloneFixture(t *testing.T, sizes []int, corrupt int, repoMode os.FileMode) *cloneFixture {
	t.Helper()
	fx := &cloneFixture{fs: testfs.XFS(t, 0)}
	srcDir := fx.fs.Path("src")
	if err := os.Mkdir(srcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	man, cfg := `{"schemaVersion":2}`, `{"created":"2024-01-01T00:00:00Z"}`
	img := &stream.Image{ManifestDigest: sha(man), ConfigDigest: sha(cfg), Manifest: man, Config: cfg}
	if repoMode != 0 {
		must(os.WriteFile(filepath.Join(srcDir, "meta.json"), []byte("{}\n"), 0o644))
		must(os.Chmod(srcDir, repoMode))
		img.Stores.Composefs = &stream.ComposefsStore{Repo: srcDir}
	}
	var list bytes.Buffer
	w := stream.NewWriter(&list)
	must(w.WriteImage(img))
	must(w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: "/", Mode: 0o755}))
	must(w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: "/usr", Mode: 0o755}))
	rng := rand.New(rand.NewSource(1))
	for i, size := range sizes {
		data := make([]byte, size)
		rng.Read(data)
		id, err := fsverity.Digest(bytes.NewReader(data), fsverity.SHA512)
		must(err)
		if i == corrupt {
			data[size/2] ^= 1 // the bytes at src are not the object the id names
		}
		hexID := hex.EncodeToString(id)
		src := filepath.Join(srcDir, fmt.Sprintf("obj%d", i))
		if repoMode != 0 {
			src = filepath.Join(srcDir, "objects", hexID[:2], hexID[2:])
			must(os.MkdirAll(filepath.Dir(src), 0o755))
		}
		must(os.WriteFile(src, data, 0o644))
		e := &stream.Entry{Type: stream.TypeFile, Path: fmt.Sprintf("/usr/f%02d", i), Mode: 0o644, Size: int64(size), Composefs: hexID, Src: src}
		must(w.WriteEntry(e))
		fx.entries = append(fx.entries, e)
		fx.bytes += int64(size)
	}
	must(w.Close())
	fx.list = list.Bytes()
	return fx
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// readChars is the rchar of /proc/self/io: bytes this process read through
// read-like system calls, from the page cache or not.
func readChars(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

// Each byte of an image is read once by the clone: the read that computes
// the ostree checksum also gives the fs-verity digest proving the bytes
// are the composefs object, and both are taken from the clone, the bytes
// actually stored. (It used to read src for both digests and then the
// clone again for the checksum.) Every object still shares its extents
// and is named by the checksum of its bytes.
func TestToOstreeReadsEachByteOnce(t *testing.T) {
	testfs.RequirePrivileged(t)
	sizes := []int{65, 4096, 100_000, 1 << 20, 3<<20 + 17, 8 << 20}
	fx := newCloneFixture(t, sizes, -1, 0)
	repo, err := ostree.Create(fx.fs.Path("repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	var out bytes.Buffer
	before := readChars(t)
	sum, err := ToOstree(context.Background(), repo, bytes.NewReader(fx.list), &out, Options{Workers: 2})
	read := readChars(t) - before
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes of files, %d read", fx.bytes, read)
	if read > fx.bytes+fx.bytes/10 {
		t.Errorf("read %d bytes to clone %d: each byte must be read once", read, fx.bytes)
	}
	if sum.Reflinked != int64(len(sizes)) {
		t.Errorf("%d files reflinked, want %d", sum.Reflinked, len(sizes))
	}
	r := stream.NewReader(&out)
	if _, err := r.Image(); err != nil {
		t.Fatal(err)
	}
	i := 0
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != stream.TypeFile {
			continue
		}
		data, err := os.ReadFile(fx.entries[i].Src)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ostree.FileChecksum(ostree.FileMeta{Mode: 0o644}, bytes.NewReader(data))
		if e.Ostree != want {
			t.Errorf("%s: ostree %s, want %s", e.Path, e.Ostree, want)
		}
		obj, err := os.Open(filepath.Join(repo.Path(), ostree.ObjectPath(e.Ostree, ostree.ObjectFile)))
		if err != nil {
			t.Fatal(err)
		}
		shared, total, err := reflink.SharedBytes(obj)
		obj.Close()
		if err != nil || total != e.Size || shared < total-4096 {
			t.Errorf("%s: object shares %d of %d bytes (%v)", e.Path, shared, total, err)
		}
		i++
	}
	if i != len(sizes) {
		t.Fatalf("%d files in the output, want %d", i, len(sizes))
	}
}

// A src whose bytes are not the entry's composefs object fails the clone
// naming both digests, and no object is named for it.
func TestToOstreeRefusesWrongSrc(t *testing.T) {
	testfs.RequirePrivileged(t)
	fx := newCloneFixture(t, []int{5000, 70_000}, 1, 0)
	repo, err := ostree.Create(fx.fs.Path("repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	_, err = ToOstree(context.Background(), repo, bytes.NewReader(fx.list), io.Discard, Options{Workers: 1})
	bad := fx.entries[1]
	if err == nil || !strings.Contains(err.Error(), bad.Path) || !strings.Contains(err.Error(), "fs-verity digest") || !strings.Contains(err.Error(), bad.Composefs) {
		t.Fatalf("err = %v, want the wrong src of %s refused", err, bad.Path)
	}
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bad.Src)
	if err != nil {
		t.Fatal(err)
	}
	csum, _ := ostree.FileChecksum(ostree.FileMeta{Mode: 0o644}, bytes.NewReader(data))
	if ok, err := repo.HasObject(csum, ostree.ObjectFile); err != nil || ok {
		t.Errorf("an object was stored for the refused src (%v)", err)
	}
}

// The trust model (docs/composefs.md): the object a root-only composefs
// repository holds under the entry's own id is cloned without hashing it
// again, so even a damaged one is cloned as it is (its ostree object is
// named by the bytes it holds, and cfs-fsck objects reports the composefs
// object); the same bytes anywhere else, or in a repository others may
// write, are refused.
func TestToOstreeTrustsOnlyTheRepositorysOwnObjects(t *testing.T) {
	testfs.RequirePrivileged(t)
	for _, c := range []struct {
		name    string
		mode    os.FileMode
		refused bool
	}{
		{"root-only repository", 0o700, false},
		{"group-writable repository", 0o770, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newCloneFixture(t, []int{5000, 70_000}, 1, c.mode)
			repo, err := ostree.Create(fx.fs.Path("repo"), ostree.ModeBare)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			var out bytes.Buffer
			_, err = ToOstree(context.Background(), repo, bytes.NewReader(fx.list), &out, Options{Workers: 1})
			if c.refused {
				if err == nil || !strings.Contains(err.Error(), "fs-verity digest") {
					t.Fatalf("err = %v, want the damaged object refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, entries, err := stream.ReadAll(&out)
			if err != nil {
				t.Fatal(err)
			}
			bad := fx.entries[1]
			data, err := os.ReadFile(bad.Src)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ostree.FileChecksum(ostree.FileMeta{Mode: 0o644}, bytes.NewReader(data))
			for _, e := range entries {
				if e.Path == bad.Path && e.Ostree != want {
					t.Errorf("%s: ostree %s, the bytes stored give %s", e.Path, e.Ostree, want)
				}
			}
		})
	}
}
