package ostreeimport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/stream"
)

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// synthetic writes a list exercising every convention: /etc remapped,
// excluded directories with content (a device in /dev), a non-directory at
// an excluded name, hardlinks, symlinks and files with SELinux labels
// lacking their NUL, user xattrs, a capability, and a kernel.
func synthetic(t *testing.T, dir string, extra func(w *stream.Writer)) []byte {
	t.Helper()
	cfg := `{"created":"2024-01-02T03:04:05Z","config":{"Labels":{"org.opencontainers.image.version":"42.1"}}}`
	man := `{"schemaVersion":2,"annotations":{"x":"y"}}`
	obj := func(name string, size int) (string, string) {
		p := filepath.Join(dir, name)
		data := bytes.Repeat([]byte(name), size/len(name)+1)[:size]
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := fsverity.DigestFile(p, fsverity.SHA512)
		if err != nil {
			t.Fatal(err)
		}
		return p, hex.EncodeToString(d)
	}
	var buf bytes.Buffer
	w := stream.NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.WriteImage(&stream.Image{Source: "docker://quay.io/example/os:42", ManifestDigest: digestOf(man), ConfigDigest: digestOf(cfg), Manifest: man, Config: cfg}))
	label := func(l string) map[string][]byte {
		return map[string][]byte{"security.selinux": []byte("system_u:object_r:" + l + ":s0")}
	}
	aSrc, aID := obj("a", 5000)
	kSrc, kID := obj("vmlinuz", 70000)
	cSrc, cID := obj("c", 100)
	for _, e := range []*stream.Entry{
		{Type: stream.TypeDir, Path: "/", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/dev", Mode: 0o755},
		{Type: stream.TypeCharDev, Path: "/dev/null", Mode: 0o666, Rdev: 259},
		{Type: stream.TypeDir, Path: "/etc", Mode: 0o755, Xattrs: label("etc_t")},
		{Type: stream.TypeFile, Path: "/etc/big", Mode: 0o600, UID: 12, GID: 34, Size: 100, Src: cSrc, Composefs: cID},
		{Type: stream.TypeFile, Path: "/etc/empty", Mode: 0o644},
		{Type: stream.TypeFile, Path: "/etc/hostname", Mode: 0o644, Size: 5, Inline: []byte("host\n"), Xattrs: map[string][]byte{"user.x": []byte("y")}},
		{Type: stream.TypeHardlink, Path: "/etc/linked", LinkTo: "/etc/big"},
		{Type: stream.TypeDir, Path: "/run", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/run/junk", Mode: 0o644, Size: 1, Inline: []byte("j")},
		{Type: stream.TypeSymlink, Path: "/tmp", Target: "var/tmp"},
		{Type: stream.TypeDir, Path: "/usr", Mode: 0o755, Xattrs: label("usr_t")},
		{Type: stream.TypeDir, Path: "/usr/bin", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/usr/bin/a", Mode: 0o4755, Size: 5000, Src: aSrc, Composefs: aID,
			Xattrs: map[string][]byte{"security.selinux": []byte("system_u:object_r:bin_t:s0"), "user.a": []byte("1"), "security.capability": []byte("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")}},
		{Type: stream.TypeHardlink, Path: "/usr/bin/b", LinkTo: "/usr/bin/a"},
		{Type: stream.TypeSymlink, Path: "/usr/bin/c", Target: "a", UID: 5, Xattrs: label("bin_t")},
		{Type: stream.TypeDir, Path: "/usr/lib", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/usr/lib/modules", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/usr/lib/modules/6.1.0-test", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/usr/lib/modules/6.1.0-test/vmlinuz", Mode: 0o755, Size: 70000, Src: kSrc, Composefs: kID},
		{Type: stream.TypeDir, Path: "/var", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/var/tmp", Mode: 0o1777},
	} {
		must(w.WriteEntry(e))
	}
	must(w.Close())
	return buf.Bytes()
}

func cloneAndImport(t *testing.T, repo *ostree.Repo, list []byte, opts ostreeimport.Options) (*clone.Summary, *ostreeimport.Result, error) {
	t.Helper()
	var annotated bytes.Buffer
	sum, err := clone.ToOstree(context.Background(), repo, bytes.NewReader(list), &annotated, clone.Options{})
	if err != nil {
		return sum, nil, err
	}
	res, err := ostreeimport.Import(context.Background(), repo, &annotated, opts)
	return sum, res, err
}

func ostreeCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(testfs.RequireTool(t, "ostree"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ostree %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSyntheticConventions(t *testing.T) {
	fs := testfs.XFS(t, 0)
	testfs.RequireTool(t, "ostree")
	src := fs.Path("src")
	os.Mkdir(src, 0o755)
	list := synthetic(t, src, nil)
	for _, mode := range []ostree.RepoMode{ostree.ModeBare, ostree.ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			path := fs.Path(string(mode))
			repo, err := ostree.Create(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			sum, res, err := cloneAndImport(t, repo, list, ostreeimport.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Reflinked != 3 || sum.Small != 2 || sum.Symlinks != 1 {
				t.Errorf("clone summary %+v", sum)
			}
			if res.Skipped != 3 || res.Hardlinks != 2 || res.Kernel != "6.1.0-test" || res.Version != "42.1" ||
				!res.Timestamp.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) || res.Ref != "ostree/container/image/docker_3A__2F__2F_quay_2E_io/example/os_3A_42" {
				t.Errorf("import result %+v", res)
			}
			ostreeCLI(t, "fsck", "--repo="+path)
			co := fs.Path("co-" + string(mode))
			ostreeCLI(t, "checkout", "--repo="+path, res.Ref, co)
			var names []string
			filepath.Walk(co, func(p string, _ os.FileInfo, _ error) error {
				rel, _ := filepath.Rel(co, p)
				names = append(names, rel)
				return nil
			})
			want := ". dev run usr usr/bin usr/bin/a usr/bin/b usr/bin/c usr/etc usr/etc/big usr/etc/empty usr/etc/hostname usr/etc/linked usr/lib usr/lib/modules usr/lib/modules/6.1.0-test usr/lib/modules/6.1.0-test/vmlinuz var var/tmp"
			if got := strings.Join(names, " "); got != want {
				t.Errorf("checkout has\n %s\nwant\n %s", got, want)
			}
			xattr := func(p, name string) string {
				buf := make([]byte, 256)
				n, err := unix.Lgetxattr(filepath.Join(co, p), name, buf)
				if err != nil {
					return "<" + err.Error() + ">"
				}
				return string(buf[:n])
			}
			for _, c := range []struct{ path, name, want string }{
				{"usr/bin/a", "security.selinux", "system_u:object_r:bin_t:s0\x00"},
				{"usr/bin/a", "user.a", "1"},
				{"usr/bin/c", "security.selinux", "system_u:object_r:bin_t:s0\x00"},
				{"usr/etc", "security.selinux", "system_u:object_r:etc_t:s0\x00"},
				{"usr/etc/hostname", "user.x", "y"},
			} {
				if got := xattr(c.path, c.name); got != c.want {
					t.Errorf("%s %s = %q, want %q", c.path, c.name, got, c.want)
				}
			}
			var st unix.Stat_t
			unix.Lstat(filepath.Join(co, "usr/bin/a"), &st)
			// A bare checkout hardlinks objects, so the image's hardlink
			// pair is one inode; bare-user checkouts copy setuid files.
			if st.Mode&0o7777 != 0o4755 || mode == ostree.ModeBare && st.Nlink < 2 {
				t.Errorf("usr/bin/a mode %#o nlink %d", st.Mode, st.Nlink)
			}
			unix.Lstat(filepath.Join(co, "usr/etc/big"), &st)
			if st.Uid != 12 || st.Gid != 34 || st.Mode&0o7777 != 0o600 {
				t.Errorf("usr/etc/big %d:%d %#o", st.Uid, st.Gid, st.Mode)
			}
			// libostree commits the checkout to the same ContentChecksum.
			oracle := fs.Path("oracle-" + string(mode))
			ostreeCLI(t, "init", "--repo="+oracle, "--mode=bare")
			ostreeCLI(t, "commit", "--repo="+oracle, "--tree=dir="+co, "-b", "o", "--no-bindings")
			re := regexp.MustCompile(`ContentChecksum:\s+(\S+)`)
			theirs := re.FindStringSubmatch(ostreeCLI(t, "show", "--repo="+oracle, "o"))
			if theirs == nil || theirs[1] != res.ContentChecksum {
				t.Errorf("ContentChecksum ours %s, ostree commit %v", res.ContentChecksum, theirs)
			}
			for _, key := range []string{"ostree.linux", "version", "ostree-ext.composefs-synthesized", "ostree.bootable"} {
				ostreeCLI(t, "show", "--repo="+path, res.Ref, "--print-metadata-key="+key)
			}
		})
	}
}

func TestEtcAndUsrEtc(t *testing.T) {
	fs := testfs.XFS(t, 0)
	repo, err := ostree.Create(fs.Path("repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	cfg, man := `{}`, `{}`
	var buf bytes.Buffer
	w := stream.NewWriter(&buf)
	w.WriteImage(&stream.Image{Source: "docker://x/y:1", ManifestDigest: digestOf(man), ConfigDigest: digestOf(cfg), Manifest: man, Config: cfg})
	for _, p := range []string{"/", "/etc", "/usr", "/usr/etc"} {
		w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: p, Mode: 0o755})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err = cloneAndImport(t, repo, buf.Bytes(), ostreeimport.Options{})
	if err == nil || !strings.Contains(err.Error(), "both /etc and /usr/etc") {
		t.Errorf("err = %v", err)
	}
	if refs, _ := repo.ListRefs(""); len(refs) != 0 {
		t.Errorf("refs %v", refs)
	}
}

// cancelAfter cancels a context once n bytes have been read through it.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 512)])
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestImportCancelled cancels an import part-way through its list: it
// stops with the context's error and sets no ref.
func TestImportCancelled(t *testing.T) {
	fs := testfs.XFS(t, 0)
	src := fs.Path("src")
	os.Mkdir(src, 0o755)
	list := synthetic(t, src, nil)
	repo, err := ostree.Create(fs.Path("repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	var annotated bytes.Buffer
	if _, err := clone.ToOstree(context.Background(), repo, bytes.NewReader(list), &annotated, clone.Options{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := &cancelAfter{r: &annotated, n: annotated.Len() / 2, cancel: cancel}
	if _, err := ostreeimport.Import(ctx, repo, in, ostreeimport.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Import: %v, want %v", err, context.Canceled)
	}
	if refs, _ := repo.ListRefs(""); len(refs) != 0 {
		t.Errorf("refs %v after a cancelled import", refs)
	}
}
