package ostree

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"golang.org/x/sys/unix"
)

const (
	testTimestamp = 1700000000
	testSubject   = "cfs test"
	testVersion   = "42.1"
)

// vfsCapNetBindService is a valid security.capability value
// (VFS_CAP_REVISION_2, effective, permitted = CAP_NET_BIND_SERVICE); the
// kernel refuses malformed ones.
var vfsCapNetBindService = []byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// buildSourceTree makes a tree with every kind of metadata ostree records.
func buildSourceTree(t *testing.T, dir string) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	random := func(n int) []byte { b := make([]byte, n); rng.Read(b); return b }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file := func(rel string, data []byte, mode os.FileMode, uid, gid int, xattrs map[string][]byte) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, 0o600))
		must(os.Lchown(p, uid, gid))
		must(unix.Chmod(p, uint32(mode)))
		for k, v := range xattrs {
			must(unix.Lsetxattr(p, k, v, 0))
		}
	}
	mkdir := func(rel string, mode uint32, uid, gid int, xattrs map[string][]byte) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(p, 0o755))
		must(os.Lchown(p, uid, gid))
		must(unix.Chmod(p, mode))
		for k, v := range xattrs {
			must(unix.Lsetxattr(p, k, v, 0))
		}
	}
	symlink := func(rel, target string, uid, gid int, xattrs map[string][]byte) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.Symlink(target, p))
		must(os.Lchown(p, uid, gid))
		for k, v := range xattrs {
			must(unix.Lsetxattr(p, k, v, 0))
		}
	}

	must(os.MkdirAll(dir, 0o755))
	must(unix.Chmod(dir, 0o755))
	file("empty", nil, 0o644, 0, 0, nil)
	file("hello", []byte("hello"), 0o644, 0, 0, nil)
	file("a-b", []byte("y"), 0o644, 0, 0, nil)
	file("a.b", []byte("x"), 0o644, 0, 0, nil)
	file("B", []byte("upper"), 0o444, 0, 0, nil)
	file("with space", []byte("sp"), 0o640, 0, 0, nil)
	file("ünïcode", []byte("u"), 0o644, 0, 0, nil)
	file("usr/bin/suid", []byte("suid"), 0o4755, 0, 0, nil)
	file("usr/bin/sgid", []byte("sgid"), 0o2711, 0, 12, nil)
	file("usr/bin/ping", []byte("caps"), 0o755, 0, 0, map[string][]byte{"security.capability": vfsCapNetBindService})
	file("usr/lib/owned", []byte("owned"), 0o600, 1000, 1001, map[string][]byte{
		"user.zeta": []byte("last"), "user.alpha": []byte("first"), "user.Mid": []byte("mid\x00bin"),
		"user.empty": {}, "trusted.t": []byte("trusted"),
	})
	file("usr/lib/big-xattr", []byte("z"), 0o644, 0, 0, map[string][]byte{"user.big": bytes.Repeat([]byte("A"), 300)})
	file("usr/lib/selinux-like", []byte("Z"), 0o644, 0, 0, map[string][]byte{"user.label": []byte("system_u:object_r:usr_t:s0\x00")})
	file("usr/share/data/1000", bytes.Repeat([]byte("A"), 1000), 0o644, 0, 0, nil)
	file("usr/share/data/70k", random(70000), 0o644, 0, 0, nil)
	file("usr/share/data/3M", random(3<<20+17), 0o644, 0, 0, nil)
	for i := 0; i < 40; i++ { // a dirtree well past 255 bytes: 2-byte framing offsets
		file(fmt.Sprintf("usr/share/many/file-%02d", i), []byte{byte(i)}, 0o644, 0, 0, nil)
	}
	must(os.Link(filepath.Join(dir, "hello"), filepath.Join(dir, "usr/share/hello-hardlink")))
	symlink("lib", "usr/lib", 0, 0, nil)
	symlink("abs", "/usr/lib", 0, 0, nil)
	symlink("usr/bin/rel", "../lib/owned", 0, 0, map[string][]byte{"trusted.x": []byte("1")})
	symlink("dangling", "does/not/exist", 1000, 1000, nil)
	mkdir("emptydir", 0o755, 0, 0, map[string][]byte{"user.dirattr": []byte("dv")})
	mkdir("usr/lib/privdir", 0o700, 42, 43, nil)
	mkdir("tmp", 0o1777, 0, 0, nil)
	mkdir("ro", 0o555, 0, 0, nil)
	file("deep/a/b/c/d/e/leaf", []byte("leaf"), 0o644, 0, 0, nil)
	mkdir("deep/a/b", 0o711, 7, 8, nil)
}

func setupRepos(t *testing.T) (src, cliRepo string) {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "ostree")
	base := t.TempDir()
	src = filepath.Join(base, "src")
	buildSourceTree(t, src)
	cliRepo = filepath.Join(base, "cli-repo")
	ostreeCLI(t, "init", "--repo="+cliRepo, "--mode=bare")
	ostreeCLI(t, "--repo="+cliRepo, "commit", "--tree=dir="+src, "-b", "test", "--no-bindings",
		fmt.Sprintf("--timestamp=@%d", testTimestamp), "-s", testSubject, "--add-metadata-string=version="+testVersion)
	return src, cliRepo
}

func commitWithLibrary(t *testing.T, repoPath string, mode RepoMode, src string) (string, DirRef) {
	t.Helper()
	repo, err := Create(repoPath, mode)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	root := commitDirWithLibrary(t, repo, src)
	commit, err := repo.WriteCommit(Commit{
		Metadata:  []MetaEntry{MetaString("version", testVersion)},
		Subject:   testSubject,
		Timestamp: testTimestamp,
		RootTree:  root.Tree,
		RootMeta:  root.Meta,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.SetRef("test", commit); err != nil {
		t.Fatal(err)
	}
	return commit, root
}

// The central oracle: for the same tree, our commit must be the one
// `ostree commit --tree=dir=` makes, byte for byte (same commit id, so the
// same root tree, root meta and, recursively, every object), and the real
// tools must accept and reproduce it.
func TestCommitMatchesOstreeCLI(t *testing.T) {
	src, cliRepo := setupRepos(t)
	cliCommit := strings.TrimSpace(ostreeCLI(t, "--repo="+cliRepo, "rev-parse", "test"))
	cliListing := ostreeCLI(t, "--repo="+cliRepo, "ls", "-R", "-C", "-X", "test")
	cliShow := ostreeCLI(t, "--repo="+cliRepo, "show", "test")
	srcTree := snapshotTree(t, src)

	for _, mode := range []RepoMode{ModeBare, ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			repoPath := filepath.Join(t.TempDir(), "repo")
			commit, root := commitWithLibrary(t, repoPath, mode, src)

			if commit != cliCommit {
				t.Errorf("commit %s, ostree commit made %s", commit, cliCommit)
			}
			cc, _ := ContentChecksum(root.Tree, root.Meta)
			if !strings.Contains(cliShow, "ContentChecksum:  "+cc) {
				t.Errorf("ContentChecksum %s not in ostree show output:\n%s", cc, cliShow)
			}
			if got := ostreeCLI(t, "--repo="+repoPath, "ls", "-R", "-C", "-X", "test"); got != cliListing {
				t.Errorf("ostree ls -RCX differs.\nours:\n%s\nostree commit:\n%s", got, cliListing)
			}
			ostreeCLI(t, "fsck", "--repo="+repoPath)
			if got := strings.TrimSpace(ostreeCLI(t, "--repo="+repoPath, "rev-parse", "test")); got != commit {
				t.Errorf("rev-parse test = %s, want %s", got, commit)
			}

			// Binary-search lookups of every path (an unsorted dirtree passes
			// fsck but fails these).
			for rel, e := range srcTree {
				p := "/" + rel
				if rel == "." {
					p = "/"
				}
				out := ostreeCLI(t, "--repo="+repoPath, "ls", "-d", "test", p)
				if !strings.Contains(out, " "+p) {
					t.Errorf("ostree ls %s: %q", p, out)
				}
				if e.typ == sIFREG && len(e.content) < 100 {
					if got := ostreeCLI(t, "--repo="+repoPath, "cat", "test", p); got != e.content {
						t.Errorf("ostree cat %s = %q, want %q", p, got, e.content)
					}
				}
			}

			co := filepath.Join(t.TempDir(), "checkout")
			ostreeCLI(t, "--repo="+repoPath, "checkout", "test", co)
			compareTrees(t, srcTree, snapshotTree(t, co), "checkout of "+string(mode))
		})
	}
}

// bare-user objects carry their metadata in user.ostreemeta and are
// harmless inodes themselves.
func TestBareUserObjectLayout(t *testing.T) {
	src, _ := setupRepos(t)
	repoPath := filepath.Join(t.TempDir(), "repo")
	commitWithLibrary(t, repoPath, ModeBareUser, src)
	repo, err := Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	suid, _ := FileChecksum(FileMeta{Mode: 0o4755}, strings.NewReader("suid"))
	link, _ := SymlinkChecksum(FileMeta{}, "/usr/lib")
	check := func(csum string, wantPerm uint32, wantContent string, wantMeta string) {
		t.Helper()
		p := filepath.Join(repoPath, ObjectPath(csum, ObjectFile))
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != sIFREG|wantPerm || st.Mtim.Sec != 0 {
			t.Errorf("%s: mode %#o mtime %d", p, st.Mode, st.Mtim.Sec)
		}
		b, _ := os.ReadFile(p)
		if string(b) != wantContent {
			t.Errorf("%s: content %q", p, b)
		}
		meta := make([]byte, 256)
		n, err := unix.Lgetxattr(p, bareUserMetaXattr, meta)
		if err != nil || fmt.Sprintf("%x", meta[:n]) != wantMeta {
			t.Errorf("%s: ostreemeta %x (%v), want %s", p, meta[:n], err, wantMeta)
		}
	}
	check(suid, 0o755, "suid", "0000000000000000000089ed")
	check(link, 0o644, "/usr/lib\x00", "00000000000000000000a1ff")
}
