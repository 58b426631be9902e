package ostree

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"golang.org/x/sys/unix"
)

func requireOstree(t *testing.T) {
	t.Helper()
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "ostree")
}

// smallCommit writes a one-file tree and returns the file's and the
// commit's checksums.
func smallCommit(t *testing.T, repo *Repo, content string) (file, commit string) {
	t.Helper()
	file, _, err := repo.WriteFileObjectFrom(FileMeta{UID: 1000, GID: 1000, Mode: 0o644, Xattrs: map[string][]byte{"user.k": []byte("v")}}, strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	link, _, err := repo.WriteSymlinkObject(FileMeta{}, "f")
	if err != nil {
		t.Fatal(err)
	}
	w := repo.NewTreeWriter()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.EnterDir("", DirMeta{Mode: 0o755}))
	must(w.AddFile("f", file))
	must(w.AddFile("l", link))
	root, err := w.LeaveDir()
	must(err)
	commit, err = repo.WriteCommit(Commit{Subject: "s", Timestamp: 1, RootTree: root.Tree, RootMeta: root.Meta})
	must(err)
	must(repo.SetRef("r", commit))
	return file, commit
}

// The oracle must be able to fail: corrupt objects are reported.
func TestFsckDetectsCorruption(t *testing.T) {
	requireOstree(t)
	for _, mode := range []RepoMode{ModeBare, ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			corruptions := map[string]func(p string) error{
				"content": func(p string) error {
					f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						return err
					}
					defer f.Close()
					_, err = f.WriteString("!")
					return err
				},
				"metadata": func(p string) error {
					if mode == ModeBareUser {
						return unix.Setxattr(p, bareUserMetaXattr, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xa4}, 0)
					}
					return os.Chown(p, 0, 0)
				},
			}
			for name, corrupt := range corruptions {
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "repo")
					repo, err := Create(path, mode)
					if err != nil {
						t.Fatal(err)
					}
					file, _ := smallCommit(t, repo, "payload")
					repo.Close()
					ostreeCLI(t, "fsck", "--repo="+path)
					if err := corrupt(filepath.Join(path, ObjectPath(file, ObjectFile))); err != nil {
						t.Fatal(err)
					}
					out, err := ostreeCLIResult("fsck", "--repo="+path)
					if err == nil || !strings.Contains(out, "Corrupted file object") {
						t.Errorf("fsck accepted a corrupted object (err %v):\n%s", err, out)
					}
				})
			}
		})
	}
	t.Run("dirtree", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "repo")
		repo, _ := Create(path, ModeBare)
		_, commit := smallCommit(t, repo, "payload")
		c, err := repo.ReadCommit(commit)
		if err != nil {
			t.Fatal(err)
		}
		repo.Close()
		p := filepath.Join(path, ObjectPath(c.RootTree, ObjectDirTree))
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, []byte{0}, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := ostreeCLIResult("fsck", "--repo="+path); err == nil {
			t.Errorf("fsck accepted a dirtree with the wrong content:\n%s", out)
		}
	})
}

// An object that is already there is success, also when two writers race
// for it; the existing object is left alone.
func TestWriteSameObjectTwice(t *testing.T) {
	requireOstree(t)
	for _, mode := range []RepoMode{ModeBare, ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "repo")
			repo, err := Create(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			meta := FileMeta{UID: 5, GID: 6, Mode: 0o4755, Xattrs: map[string][]byte{"trusted.a": []byte("b")}}
			first, created, err := repo.WriteFileObjectFrom(meta, strings.NewReader("same"))
			if err != nil || !created {
				t.Fatalf("first write: created=%v err=%v", created, err)
			}
			var st1 unix.Stat_t
			unix.Stat(filepath.Join(path, ObjectPath(first, ObjectFile)), &st1)

			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					csum, created, err := repo.WriteFileObjectFrom(meta, strings.NewReader("same"))
					if err == nil && (csum != first || created) {
						err = errors.New("second write created a new object or changed the checksum: " + csum)
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			var st2 unix.Stat_t
			unix.Stat(filepath.Join(path, ObjectPath(first, ObjectFile)), &st2)
			if st1.Ino != st2.Ino {
				t.Error("existing object was replaced")
			}

			// Racing writers whose object does not exist yet: exactly one creates it.
			var createdCount int
			var mu sync.Mutex
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, c, err := repo.WriteFileObjectFrom(FileMeta{Mode: 0o644}, strings.NewReader("race"))
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					if c {
						createdCount++
					}
					mu.Unlock()
				}()
			}
			wg.Wait()
			if createdCount != 1 {
				t.Errorf("%d writers report creating the same object", createdCount)
			}

			// knownChecksum: present object short-circuits, wrong content is refused.
			called := false
			csum, created, err := repo.WriteFileObject(meta, func(*os.File) error { called = true; return nil }, first, int64(len("same")))
			if err != nil || created || called || csum != first {
				t.Errorf("known present object: csum=%s created=%v fill called=%v err=%v", csum, created, called, err)
			}
			bogus := strings.Repeat("0", 64)
			_, _, err = repo.WriteFileObject(meta, func(f *os.File) error { _, err := f.WriteString("other"); return err }, bogus, 5)
			if err == nil {
				t.Error("content that does not match knownChecksum was stored")
			}
			if have, _ := repo.HasObject(bogus, ObjectFile); have {
				t.Error("object stored under the caller's wrong checksum")
			}

			// Symlinks and metadata objects, twice each.
			for i := 0; i < 2; i++ {
				if _, _, err := repo.WriteSymlinkObject(FileMeta{UID: 1}, "t"); err != nil {
					t.Fatal(err)
				}
				if _, err := repo.WriteDirMeta(DirMeta{Mode: 0o700}); err != nil {
					t.Fatal(err)
				}
			}
			if err := repo.Flush(); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(filepath.Join(path, "tmp"))
			for _, e := range entries {
				if e.Name() != "cache" {
					t.Errorf("temp file left behind: tmp/%s", e.Name())
				}
			}
		})
	}
}

// A ref never names something that is not fully there.
func TestRefWrittenOnlyAfterCommit(t *testing.T) {
	requireOstree(t)
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := Create(path, ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	missing := strings.Repeat("ab", 32)
	if err := repo.SetRef("r", missing); err == nil {
		t.Error("SetRef to a missing commit succeeded")
	}
	if _, err := os.Stat(filepath.Join(path, "refs/heads/r")); !os.IsNotExist(err) {
		t.Errorf("ref file exists after a failed SetRef: %v", err)
	}
	meta, _ := repo.WriteDirMeta(DirMeta{Mode: 0o755})
	if _, err := repo.WriteCommit(Commit{RootTree: missing, RootMeta: meta}); err == nil {
		t.Error("commit with a missing root tree written")
	}
	_, commit := smallCommit(t, repo, "x")
	got, ok, err := repo.ResolveRef("r")
	if err != nil || !ok || got != commit {
		t.Errorf("ResolveRef = %s %v %v", got, ok, err)
	}
	if b, _ := os.ReadFile(filepath.Join(path, "refs/heads/r")); string(b) != commit+"\n" {
		t.Errorf("ref file %q", b)
	}
	if out := strings.TrimSpace(ostreeCLI(t, "--repo="+path, "rev-parse", "r")); out != commit {
		t.Errorf("ostree rev-parse r = %s", out)
	}

	// The image ref ostree-ext would use, with the characters it escapes.
	imgRef, err := ImageRef("docker://quay.io/example/os:latest")
	if err != nil || imgRef != "ostree/container/image/docker_3A__2F__2F_quay_2E_io/example/os_3A_latest" {
		t.Fatalf("ImageRef = %q %v", imgRef, err)
	}
	if err := repo.SetRef(imgRef, commit); err != nil {
		t.Fatal(err)
	}
	refs := ostreeCLI(t, "--repo="+path, "refs")
	if !strings.Contains(refs, imgRef+"\n") {
		t.Errorf("ostree refs does not list %s:\n%s", imgRef, refs)
	}
	listed, err := repo.ListRefs(ImageRefPrefix)
	if err != nil || len(listed) != 1 || listed[0] != imgRef {
		t.Errorf("ListRefs = %v %v", listed, err)
	}
	ostreeCLI(t, "fsck", "--repo="+path)
	if err := repo.DeleteRef(imgRef); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := repo.ResolveRef(imgRef); ok {
		t.Error("ref still there after DeleteRef")
	}
}

// Create must give what `ostree init` gives, and Open must read what it
// writes, in every mode.
func TestCreateAndOpenMatchOstreeInit(t *testing.T) {
	requireOstree(t)
	layout := func(root string) []string {
		var out []string
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			rel, _ := filepath.Rel(root, p)
			if rel == "." || rel == ".lock" || strings.HasPrefix(rel, "tmp/") {
				return nil
			}
			out = append(out, rel+" "+fi.Mode().String())
			return nil
		})
		sort.Strings(out)
		return out
	}
	for _, mode := range []RepoMode{ModeBare, ModeBareUser, ModeBareUserOnly, ModeArchive} {
		t.Run(string(mode), func(t *testing.T) {
			base := t.TempDir()
			theirs, ours := filepath.Join(base, "theirs"), filepath.Join(base, "ours")
			ostreeCLI(t, "init", "--repo="+theirs, "--mode="+string(mode))
			r, err := Create(ours, mode)
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			if a, b := strings.Join(layout(theirs), "\n"), strings.Join(layout(ours), "\n"); a != b {
				t.Errorf("layout differs:\nostree init:\n%s\nours:\n%s", a, b)
			}
			if got := strings.TrimSpace(ostreeCLI(t, "--repo="+ours, "config", "get", "core.mode")); got != string(mode) {
				t.Errorf("ostree reads our mode as %q", got)
			}
			ostreeCLI(t, "fsck", "--repo="+ours)

			ostreeCLI(t, "--repo="+theirs, "config", "set", "composefs.unified", "true")
			o, err := Open(theirs)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if o.Mode() != mode {
				t.Errorf("Open: mode %s", o.Mode())
			}
			if u, err := o.ComposefsUnified(); err != nil || !u {
				t.Errorf("ComposefsUnified = %v %v", u, err)
			}
			if mode == ModeArchive {
				if _, _, err := o.WriteFileObjectFrom(FileMeta{Mode: 0o644}, strings.NewReader("x")); err == nil {
					t.Error("wrote into an archive repo")
				}
			}
		})
	}
	t.Run("SetConfig", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "repo")
		r, err := Create(path, ModeBare)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if u, _ := r.ComposefsUnified(); u {
			t.Error("fresh repo reports unified")
		}
		if err := r.SetConfig("composefs", "unified", "true"); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(ostreeCLI(t, "--repo="+path, "config", "get", "composefs.unified")); got != "true" {
			t.Errorf("ostree config get composefs.unified = %q", got)
		}
		if got := strings.TrimSpace(ostreeCLI(t, "--repo="+path, "config", "get", "core.mode")); got != "bare" {
			t.Errorf("core.mode after SetConfig = %q", got)
		}
		if _, err := Create(path, ModeBareUser); err == nil {
			t.Error("Create over a repo of another mode succeeded")
		}
	})
}

// While we write, a pruner's exclusive lock must wait; after Close it gets it.
func TestSharedLockBlocksExclusive(t *testing.T) {
	testfs.RequirePrivileged(t)
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := Create(path, ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	exclusive := func() error {
		fd, err := unix.Open(filepath.Join(path, ".lock"), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_WRLCK})
	}
	if _, err := repo.WriteDirMeta(DirMeta{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := exclusive(); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("exclusive lock while writing: %v, want EAGAIN", err)
	}
	repo.Close()
	if err := exclusive(); err != nil {
		t.Errorf("exclusive lock after Close: %v", err)
	}
}

// bare-user-only stores neither owners nor xattrs nor special bits, so
// such metadata is refused rather than silently lost.
func TestBareUserOnly(t *testing.T) {
	requireOstree(t)
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := Create(path, ModeBareUserOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	for _, bad := range []FileMeta{{UID: 1, Mode: 0o644}, {Mode: 0o4755}, {Mode: 0o644, Xattrs: map[string][]byte{"user.a": []byte("b")}}} {
		if _, _, err := repo.WriteFileObjectFrom(bad, strings.NewReader("x")); err == nil {
			t.Errorf("bare-user-only accepted %+v", bad)
		}
	}
	f, _, err := repo.WriteFileObjectFrom(FileMeta{Mode: 0o755}, strings.NewReader("#!/bin/sh\n"))
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := repo.WriteSymlinkObject(FileMeta{}, "x")
	if err != nil {
		t.Fatal(err)
	}
	root, err := repo.WriteDirTree(DirTree{Files: []DirTreeFile{{"x", f}, {"l", l}}})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := repo.WriteDirMeta(DirMeta{Mode: 0o755})
	c, err := repo.WriteCommit(Commit{RootTree: root, RootMeta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.SetRef("r", c); err != nil {
		t.Fatal(err)
	}
	ostreeCLI(t, "fsck", "--repo="+path)
	co := filepath.Join(t.TempDir(), "co")
	ostreeCLI(t, "--repo="+path, "checkout", "-U", "r", co)
	if target, _ := os.Readlink(filepath.Join(co, "l")); target != "x" {
		t.Errorf("checkout symlink -> %q", target)
	}
}
