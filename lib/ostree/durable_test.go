package ostree

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
)

// damageObjects leaves every object as a power cut leaves objects linked
// before their bytes were durable: regular files 0 bytes long. It returns
// how many it damaged, by extension.
func damageObjects(t *testing.T, repo string) map[string]int {
	t.Helper()
	n := map[string]int{}
	filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
			n[filepath.Ext(p)]++
		}
		return err
	})
	return n
}

// TestRewritesDamagedObjects: a commit whose dirtree, dirmeta, file and
// commit objects a crash left empty under their checksums. Writing the
// same tree again must not trust them: it rewrites each one and the ref
// then names a commit `ostree fsck` finds whole. Trusting existing
// objects (what the writer did) set the ref to a corrupt commit.
func TestRewritesDamagedObjects(t *testing.T) {
	for _, mode := range []RepoMode{ModeBare, ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			src, _ := setupRepos(t)
			repo := filepath.Join(t.TempDir(), "repo")
			commit, _ := commitWithLibrary(t, repo, mode, src)
			damaged := damageObjects(t, repo)
			for _, ext := range []string{".dirtree", ".dirmeta", ".file", ".commit"} {
				if damaged[ext] == 0 {
					t.Fatalf("no %s object to damage: %v", ext, damaged)
				}
			}
			again, _ := commitWithLibrary(t, repo, mode, src)
			if again != commit {
				t.Errorf("commit %s, first time %s", again, commit)
			}
			if out, err := ostreeCLIResult("fsck", "--repo="+repo); err != nil {
				t.Errorf("ostree fsck after rewriting: %v\n%s", err, out)
			}
		})
	}
}

// TestObjectsDurableBeforeNamed writes a tree with fsync noise on loop
// XFS and cuts the power (XFS shutdown) without a SetRef: whatever
// object names survive must name whole objects, and a SetRef made before
// the cut must name a commit that survived whole. Linking objects before
// their bytes are durable left empty dirtrees here.
func TestObjectsDurableBeforeNamed(t *testing.T) {
	src, _ := setupRepos(t)
	xfs := testfs.XFS(t, 0)
	path := xfs.Path("repo")
	stop := xfs.FsyncNoise(t)
	commit, _ := commitWithLibrary(t, path, ModeBare, src)
	repo, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// A second tree, left pending at the cut.
	extra := filepath.Join(t.TempDir(), "extra")
	os.MkdirAll(filepath.Join(extra, "d"), 0o755)
	os.WriteFile(filepath.Join(extra, "d", "f"), []byte(strings.Repeat("pending", 1000)), 0o644)
	commitDirWithLibrary(t, repo, extra)
	for i := 0; i < 5; i++ {
		os.WriteFile(filepath.Join(extra, "more"), []byte(strings.Repeat("x", 100*i)), 0o644)
		commitDirWithLibrary(t, repo, extra)
	}
	time.Sleep(100 * time.Millisecond) // the noise commits the journal meanwhile
	xfs.Shutdown(t)
	stop()
	repo.Close()
	xfs.Remount(t)
	out, err := ostreeCLIResult("fsck", "--repo="+path)
	if err != nil {
		t.Errorf("ostree fsck after the crash: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(ostreeCLI(t, "rev-parse", "--repo="+path, "test")); got != commit {
		t.Errorf("ref test = %q, want %s", got, commit)
	}
	checkMetadataObjects(t, path)
}

// checkMetadataObjects checks every dirtree, dirmeta and commit object,
// referenced or not (ostree fsck only walks what refs reach): its bytes
// must hash to its name.
func checkMetadataObjects(t *testing.T, repo string) {
	t.Helper()
	bad, seen := 0, 0
	filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := filepath.Ext(p)
		if ext != ".dirtree" && ext != ".dirmeta" && ext != ".commit" {
			return nil
		}
		seen++
		data, _ := os.ReadFile(p)
		name := filepath.Base(filepath.Dir(p)) + strings.TrimSuffix(filepath.Base(p), ext)
		if MetadataChecksum(data) != name {
			if bad++; bad <= 3 {
				t.Errorf("%s: %d bytes that hash to %s", p, len(data), MetadataChecksum(data))
			}
		}
		return nil
	})
	if bad > 3 {
		t.Errorf("%d of %d metadata objects are damaged", bad, seen)
	}
}

// TestPlantedSymlinksNotFollowed: symlinks planted inside the repository
// (a refs/heads directory, a ref, objects/XX, tmp) must not make a write
// land outside it.
func TestPlantedSymlinksNotFollowed(t *testing.T) {
	meta := FileMeta{Mode: 0o644}
	content := "planted"
	csum, err := FileChecksum(meta, strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	for _, planted := range []string{"refs/heads/ostree", "refs/heads/ostree/x", "objects/" + csum[:2], "tmp"} {
		t.Run(planted, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "repo")
			repo, err := Create(path, ModeBareUserOnly)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			outside := t.TempDir()
			victim := filepath.Join(outside, "victim")
			os.WriteFile(victim, []byte("untouched"), 0o644)
			os.MkdirAll(filepath.Dir(filepath.Join(path, planted)), 0o775)
			os.RemoveAll(filepath.Join(path, planted))
			target := outside
			if planted == "refs/heads/ostree/x" {
				target = victim
			}
			if err := os.Symlink(target, filepath.Join(path, planted)); err != nil {
				t.Fatal(err)
			}
			_, _, err = repo.WriteFileObjectFrom(meta, strings.NewReader(content))
			if err == nil {
				err = repo.Flush()
			}
			if err == nil {
				var root string
				w := repo.NewTreeWriter()
				w.EnterDir("", DirMeta{Mode: 0o755})
				w.AddFile("f", csum)
				ref, _ := w.LeaveDir()
				root = ref.Tree
				commit, cerr := repo.WriteCommit(Commit{RootTree: root, RootMeta: ref.Meta, Timestamp: 1})
				if cerr != nil {
					t.Fatal(cerr)
				}
				err = repo.SetRef("ostree/x", commit)
			}
			if planted != "refs/heads/ostree/x" && err == nil {
				t.Errorf("writing through a symlinked %s succeeded", planted)
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 1 {
				t.Errorf("wrote outside the repository: %d entries", len(entries))
			}
			if data, _ := os.ReadFile(victim); string(data) != "untouched" {
				t.Errorf("the file a planted ref pointed at now holds %q", data)
			}
		})
	}
}

// TestKnownChecksumChecksStoredSize: cfs-clone passes the checksum it
// computed; a stored object of that checksum that a crash left empty must
// be rewritten (fill called), not reused.
func TestKnownChecksumChecksStoredSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := Create(path, ModeBareUserOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	meta, content := FileMeta{Mode: 0o644}, strings.Repeat("known", 100)
	fill := func(f *os.File) error { _, err := f.WriteString(content); return err }
	csum, _, err := repo.WriteFileObject(meta, fill, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(path, ObjectPath(csum, ObjectFile)), 0); err != nil {
		t.Fatal(err)
	}
	if err := repo.CheckFileObject(csum, int64(len(content))); err == nil {
		t.Error("CheckFileObject accepts an empty object")
	}
	called := false
	_, created, err := repo.WriteFileObject(meta, func(f *os.File) error { called = true; return fill(f) }, csum, int64(len(content)))
	if err != nil || !created || !called {
		t.Fatalf("rewrite: created=%v fill called=%v %v", created, called, err)
	}
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(path, ObjectPath(csum, ObjectFile))); string(data) != content {
		t.Errorf("object holds %d bytes after the rewrite", len(data))
	}
}

// WriteFileObjectWith hands the caller the bytes it hashes (the same read)
// and lets it veto the object: a Verify error leaves nothing pending or
// named. HashFrom replaces the filled file as what is hashed.
func TestWriteFileObjectWithContentAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := Create(path, ModeBareUserOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	meta, content := FileMeta{Mode: 0o644}, strings.Repeat("verified", 1000)
	fill := func(f *os.File) error { _, err := f.WriteString(content); return err }
	want, _ := FileChecksum(meta, strings.NewReader(content))

	veto := errors.New("not the object the caller wanted")
	var seen bytes.Buffer
	_, _, err = repo.WriteFileObjectWith(meta, fill, FileObjectOptions{Content: &seen, Verify: func() error { return veto }})
	if !errors.Is(err, veto) {
		t.Fatalf("err = %v, want the Verify error", err)
	}
	if seen.String() != content {
		t.Errorf("Content got %d bytes, want the %d of the object", seen.Len(), len(content))
	}
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := repo.HasObject(want, ObjectFile); ok {
		t.Fatal("a vetoed object was stored")
	}

	same := filepath.Join(t.TempDir(), "same")
	if err := os.WriteFile(same, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(same)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen.Reset()
	csum, created, err := repo.WriteFileObjectWith(meta, fill, FileObjectOptions{Content: &seen, HashFrom: f, Verify: func() error { return nil }})
	if err != nil || !created || csum != want || seen.String() != content {
		t.Fatalf("csum %s (want %s) created %v err %v, %d bytes seen", csum, want, created, err, seen.Len())
	}
}
