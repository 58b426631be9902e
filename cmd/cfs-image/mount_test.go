package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
)

// srcTree creates a directory with every file type, hardlinks, xattrs,
// a whiteout, long names, a directory of several blocks, a deep path and
// files of every size class, with owners, modes and nanosecond mtimes.
func srcTree(t *testing.T, dir string) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file := func(p string, size int, perm uint32) {
		pat := []byte(fmt.Sprintf("%s:", filepath.Base(p)))
		data := bytes.Repeat(pat, size/len(pat)+1)[:size]
		must(os.WriteFile(filepath.Join(dir, p), data, 0o600))
		must(os.Chmod(filepath.Join(dir, p), os.FileMode(perm)))
	}
	mkdir := func(p string) { must(os.MkdirAll(filepath.Join(dir, p), 0o755)) }
	mknod := func(p string, mode uint32, dev int) { must(unix.Mknod(filepath.Join(dir, p), mode, dev)) }
	xattr := func(p, k, v string) { must(unix.Lsetxattr(filepath.Join(dir, p), k, []byte(v), 0)) }

	mkdir("sizes")
	for _, sz := range []int{0, 1, 63, 64, 65, 4095, 4096, 4097, 8192, 100000, 1<<20 + 1} {
		file(fmt.Sprintf("sizes/f%d", sz), sz, 0o644)
	}
	file("sizes/exec", 5000, 0o4755)
	mkdir("types")
	must(os.Symlink("../sizes/f1", filepath.Join(dir, "types/symlink")))
	must(os.Symlink(strings.Repeat("long/", 800), filepath.Join(dir, "types/longlink")))
	mknod("types/fifo", unix.S_IFIFO|0o640, 0)
	mknod("types/socket", unix.S_IFSOCK|0o755, 0)
	mknod("types/chr", unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3)))
	mknod("types/blk", unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0)))
	mkdir("whiteouts")
	mknod("whiteouts/gone", unix.S_IFCHR|0o600, 0)
	file("whiteouts/kept", 3, 0o644)
	mkdir("links/a")
	mkdir("links/b")
	file("links/a/orig", 70000, 0o640)
	must(os.Link(filepath.Join(dir, "links/a/orig"), filepath.Join(dir, "links/b/second")))
	must(os.Link(filepath.Join(dir, "links/a/orig"), filepath.Join(dir, "links/third")))
	file("links/small", 10, 0o644)
	must(os.Link(filepath.Join(dir, "links/small"), filepath.Join(dir, "links/small2")))
	mkdir("large")
	for i := 0; i < 1500; i++ {
		file(fmt.Sprintf("large/entry-%04d-%s", i, strings.Repeat("n", i%60)), i%3*40, 0o644)
	}
	file("large/"+strings.Repeat("L", 255), 1, 0o644)
	deep := "deep"
	for i := 0; i < 50; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", i))
	}
	mkdir(deep)
	file(filepath.Join(deep, "bottom"), 200, 0o600)
	xattr("sizes/f1", "user.one", "1")
	xattr("sizes/f100000", "user.shared", "same")
	xattr("sizes/f4096", "user.shared", "same")
	xattr("types", "trusted.custom", "t")
	xattr("types/symlink", "trusted.onlink", "yes")
	xattr("links/a/orig", "user.bin", "\x00\xff=")
	xattr("sizes", "trusted.overlay.opaque", "y") // user data: escaped in the image
	must(os.Lchown(filepath.Join(dir, "sizes/f0"), 1000, 100))
	must(os.Lchown(filepath.Join(dir, "sizes/f65"), 70000, 80000))
	must(os.Lchown(filepath.Join(dir, "types/symlink"), 5, 6))
	// mtimes last, deepest first, since creating entries touches dirs.
	var paths []string
	must(filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		ts := []unix.Timespec{{Sec: 1700000000, Nsec: 0}, {Sec: 1700000000 + int64(i%5), Nsec: int64(i%3) * 333333333}}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

type entry struct {
	st     unix.Stat_t
	xattrs map[string]string
	link   string
	data   []byte
}

func scan(t *testing.T, root string) map[string]*entry {
	out := map[string]*entry{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := &entry{xattrs: map[string]string{}}
		if err := unix.Lstat(p, &e.st); err != nil {
			return err
		}
		buf := make([]byte, 1<<16)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, k := range strings.Split(string(buf[:n]), "\x00") {
			if k == "" || k == "security.selinux" {
				continue
			}
			v := make([]byte, 1<<16)
			m, err := unix.Lgetxattr(p, k, v)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", p, k, err)
			}
			e.xattrs[k] = string(v[:m])
		}
		switch e.st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			e.link, err = os.Readlink(p)
		case unix.S_IFREG:
			e.data, err = os.ReadFile(p)
		}
		out[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if err := newApp().Run(append([]string{"cfs-image"}, args...)); err != nil {
		t.Fatalf("cfs-image %s: %v", strings.Join(args, " "), err)
	}
}

// TestMountShowsSourceTree mounts an image made from a directory, file
// backed and through a loop device, and compares what the kernel shows
// with the source.
func TestMountShowsSourceTree(t *testing.T) {
	testfs.RequirePrivileged(t)
	t.Run("file", func(t *testing.T) { testMount(t) })
	t.Run("loop", func(t *testing.T) { testMount(t, "--loop") })
}

func testMount(t *testing.T, mountFlags ...string) {
	fsck := testfs.RequireTool(t, "fsck.erofs")
	work := t.TempDir()
	src, objs, mnt, img := filepath.Join(work, "src"), filepath.Join(work, "objects"), filepath.Join(work, "mnt"), filepath.Join(work, "img.cfs")
	for _, d := range []string{src, objs, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srcTree(t, src)
	run(t, "mkfs", "--hardlinks", "--objects", objs, src, img) // the comparison below checks hardlink identity
	if out, err := exec.Command(fsck, img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs: %v\n%s", err, out)
	}
	run(t, append(append([]string{"mount"}, mountFlags...), "--objects", objs, img, mnt)...)
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil && err != unix.EINVAL {
			t.Errorf("cleanup unmount: %v", err)
		}
	})
	want, got := scan(t, src), scan(t, mnt)
	if len(want) < 1500 || len(got) < 1500 {
		t.Fatalf("scanned %d source and %d mounted entries, expected over 1500", len(want), len(got))
	}

	// What composefs deliberately changes: a whiteout is stored escaped, so
	// through the mount it is an empty file carrying the whiteout xattrs
	// (for an outer overlay to act on), and its directory is marked.
	wo := want["whiteouts/gone"]
	wo.st.Mode = unix.S_IFREG | wo.st.Mode&0o7777
	wo.st.Rdev, wo.st.Size = 0, 0
	wo.data = []byte{}
	wo.xattrs["trusted.overlay.whiteout"] = ""
	wo.xattrs["user.overlay.whiteout"] = ""
	wd := want["whiteouts"].xattrs
	wd["trusted.overlay.whiteouts"], wd["user.overlay.whiteouts"] = "", ""
	wd["trusted.overlay.opaque"], wd["user.overlay.opaque"] = "x", "x"

	var names []string
	for k := range want {
		names = append(names, k)
	}
	sort.Strings(names)
	for k := range got {
		if want[k] == nil {
			t.Errorf("%s: in the mount but not in the source", k)
		}
	}
	inodes := map[uint64]uint64{} // source ino -> mount ino
	for _, k := range names {
		w, g := want[k], got[k]
		if g == nil {
			t.Errorf("%s: missing from the mount", k)
			continue
		}
		if w.st.Mode != g.st.Mode || w.st.Uid != g.st.Uid || w.st.Gid != g.st.Gid {
			t.Errorf("%s: mode/uid/gid %o %d %d, want %o %d %d", k, g.st.Mode, g.st.Uid, g.st.Gid, w.st.Mode, w.st.Uid, w.st.Gid)
		}
		if w.st.Mtim != g.st.Mtim {
			t.Errorf("%s: mtime %v, want %v", k, g.st.Mtim, w.st.Mtim)
		}
		if w.st.Nlink != g.st.Nlink {
			t.Errorf("%s: nlink %d, want %d", k, g.st.Nlink, w.st.Nlink)
		}
		switch w.st.Mode & unix.S_IFMT {
		case unix.S_IFCHR, unix.S_IFBLK:
			if w.st.Rdev != g.st.Rdev {
				t.Errorf("%s: rdev %d, want %d", k, g.st.Rdev, w.st.Rdev)
			}
		case unix.S_IFLNK:
			if w.link != g.link {
				t.Errorf("%s: symlink target %q, want %q", k, g.link, w.link)
			}
		case unix.S_IFREG:
			if !bytes.Equal(w.data, g.data) {
				t.Errorf("%s: content differs (%d vs %d bytes)", k, len(g.data), len(w.data))
			}
			if prev, ok := inodes[w.st.Ino]; ok && prev != g.st.Ino {
				t.Errorf("%s: hardlink identity lost", k)
			}
			inodes[w.st.Ino] = g.st.Ino
		}
		if fmt.Sprint(w.xattrs) != fmt.Sprint(g.xattrs) {
			t.Errorf("%s: xattrs %q, want %q", k, g.xattrs, w.xattrs)
		}
	}

	run(t, "umount", mnt)
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err == nil && st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		t.Error("still mounted after umount")
	}
}

// TestMountWithoutObjects: without --objects the mount shows the metadata
// (the tree, sizes) and external files cannot be opened.
func TestMountWithoutObjects(t *testing.T) {
	testfs.RequirePrivileged(t)
	work := t.TempDir()
	src, mnt, img := filepath.Join(work, "src"), filepath.Join(work, "mnt"), filepath.Join(work, "img")
	for _, d := range []string{src, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "small"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("b"), 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs", src, img)
	run(t, "mount", img, mnt)
	t.Cleanup(func() { unix.Unmount(mnt, 0) })
	if data, err := os.ReadFile(filepath.Join(mnt, "small")); err != nil || string(data) != "hi" {
		t.Errorf("inline file: %q, %v", data, err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "big")); err != nil || fi.Size() != 5000 {
		t.Errorf("external file metadata: %v, %v", fi, err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "big")); err == nil {
		t.Error("external file readable without objects")
	}
	run(t, "umount", mnt)
}

// TestMountMakesNoTemporaryDirectory: the EROFS layer (and the empty data
// layer without --objects) are mounts attached nowhere, so a mount killed
// half-way cannot leave a directory behind. It must work with TMPDIR
// naming no directory at all, and leave no EROFS mount in the table.
func TestMountMakesNoTemporaryDirectory(t *testing.T) {
	testfs.RequirePrivileged(t)
	work := t.TempDir()
	src, mnt, img := filepath.Join(work, "src"), filepath.Join(work, "mnt"), filepath.Join(work, "img")
	for _, d := range []string{src, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("b"), 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs", "--objects", filepath.Join(work, "objects"), src, img)
	t.Setenv("TMPDIR", filepath.Join(work, "no-such-dir"))
	for _, args := range [][]string{{}, {"--loop"}, {"--objects", filepath.Join(work, "objects")}} {
		run(t, append(append([]string{"mount"}, args...), img, mnt)...)
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(mounts, []byte(" - erofs ")) {
			t.Errorf("mount %v: an EROFS mount is attached:\n%s", args, mounts)
		}
		if fi, err := os.Stat(filepath.Join(mnt, "big")); err != nil || fi.Size() != 5000 {
			t.Errorf("mount %v: %v %v", args, fi, err)
		}
		run(t, "umount", mnt)
	}
}
