package nativehost

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testhost"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/sysroot"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if args := os.Getenv(stageChildEnv); args != "" {
		os.Exit(stageChild(strings.Split(args, "\n")))
	}
	os.Exit(m.Run())
}

// release is one pulled release of the test OS.
type release struct {
	img   *testimage.Image
	image Image
	id    string
}

func pullRelease(t *testing.T, root, scratch string, version string) release {
	t.Helper()
	return pullReleaseSeed(t, root, scratch, 21, version)
}

// pullReleaseSeed: releases of other seeds have another kernel.
func pullReleaseSeed(t *testing.T, root, scratch string, seed int64, version string) release {
	t.Helper()
	img, err := testimage.Generate(testimage.Options{Seed: seed, Version: version, UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	return pullImage(t, root, scratch, img, "ostree-unverified-image:docker://quay.io/example/os:"+version)
}

// pullImage stores img in root's repository as cfs-pull does (its boot
// image included) and resolves it as a native deployment would.
func pullImage(t *testing.T, root, scratch string, img *testimage.Image, ref string) release {
	t.Helper()
	testhost.Pull(t, filepath.Join(root, "composefs"), scratch, img, ref)
	repo, err := composefs.Open(filepath.Join(root, "composefs"))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	im, err := ResolveImage(repo, img.ManifestDigest.String(), ref)
	if err != nil {
		t.Fatal(err)
	}
	im.Repo = nil
	return release{img: img, id: hex.EncodeToString(im.ID), image: im}
}

func openRepo(t *testing.T, root string) *composefs.Repository {
	t.Helper()
	repo, err := composefs.Open(filepath.Join(root, "composefs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return repo
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// subtree is the part of an image's expected tree under dir, re-rooted.
func subtree(tree testimage.Tree, dir string) testimage.Tree {
	out := testimage.Tree{}
	for p, e := range tree {
		rel, ok := strings.CutPrefix(p, dir+"/")
		if !ok {
			continue
		}
		c := *e
		c.Path = rel
		if c.Hardlink != "" {
			c.Hardlink = strings.TrimPrefix(c.Hardlink, dir+"/")
		}
		out[rel] = &c
	}
	return out
}

// load reads the host as cfs-status does, booted from cmdline.
func load(t *testing.T, h *Host, cmdline string) *sysroot.Host {
	t.Helper()
	s, err := sysroot.Load(h.Root, sysroot.Options{Cmdline: cmdline, RunDir: h.RunDir, ESP: espIfSystemd(h)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func espIfSystemd(h *Host) string {
	if h.Bootloader == Systemd {
		return h.ESP
	}
	return ""
}

func id(d *sysroot.Deployment) string {
	if d == nil {
		return "<none>"
	}
	return d.Verity[:12]
}

func expectSlots(t *testing.T, s *sysroot.Host, booted, staged, rollback string) {
	t.Helper()
	short := func(v string) string {
		if v == "" {
			return "<none>"
		}
		return v[:12]
	}
	if id(s.Booted) != short(booted) || id(s.Staged) != short(staged) || id(s.Rollback) != short(rollback) {
		t.Fatalf("booted %s staged %s rollback %s; want %s %s %s", id(s.Booted), id(s.Staged), id(s.Rollback),
			short(booted), short(staged), short(rollback))
	}
}

// cmdlineOf is what the bootloader puts on the kernel command line for
// the first entry: its options line.
func cmdlineOf(t *testing.T, entryPath string) string {
	t.Helper()
	e, err := sysroot.ParseBLSEntry(entryPath)
	if err != nil {
		t.Fatal(err)
	}
	return e.Options
}

// installed is a GRUB host with release 1 installed (kernel arguments
// "rw") and release 2 (another kernel, so staging writes boot files too)
// in its repository; bootDir, when given, is /boot on a filesystem of
// its own.
type installed struct {
	fs     *testfs.FS
	h      *Host
	r1, r2 release
}

func newInstalled(t *testing.T, bootDir string) *installed {
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	r1 := pullRelease(t, root, scratch, "1.0")
	r2 := pullReleaseSeed(t, root, scratch, 22, "2.0")
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root, RunDir: t.TempDir()}
	if bootDir != "" {
		h.BootDir = bootDir // on its own filesystem: entries say "/"
	}
	if _, err := h.Install(r1.image, []string{"rw"}); err != nil {
		t.Fatal(err)
	}
	return &installed{fs: fs, h: h, r1: r1, r2: r2}
}

// TestUpgradeCycleBLS installs release 1 as a GRUB host, stages release
// 2, finalizes it with /etc changes made on 1, boots it, and rolls back:
// every step checked against bootc's formats and read back as cfs-status
// reads a host.
func TestUpgradeCycleBLS(t *testing.T) {
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	r1 := pullRelease(t, root, scratch, "1.0")
	r2 := pullRelease(t, root, scratch, "2.0")
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root, RunDir: t.TempDir()}
	// The kernel command line names the boot image, not the image as
	// pulled (bootc's composefs.image.boot).
	if bytes.Equal(r1.image.ID, r1.image.Source) || r1.image.Source == nil {
		t.Fatalf("release 1 resolves to its own image %x, not a boot image", r1.image.Source)
	}

	d1, err := h.Install(r1.image, []string{"root=UUID=6e1d2f5a", "rw", "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	// The exact bytes bootc writes (containers-storage.md §6.1, §6.4).
	entry1 := filepath.Join(root, "boot/loader/entries/bootc_cfs-1.0-1.conf")
	if d1.Entry != entry1 {
		t.Errorf("entry %s, want %s", d1.Entry, entry1)
	}
	want := "title cfs-test 1.0\nversion 1.0\nlinux /boot/bootc_composefs-" + r1.id + "/vmlinuz\ninitrd /boot/bootc_composefs-" + r1.id +
		"/initrd\noptions root=UUID=6e1d2f5a rw console=ttyS0 composefs=" + r1.id + "\nsort-key bootc-cfs-0\n"
	if got := readFile(t, entry1); got != want {
		t.Errorf("entry:\n%s\nwant:\n%s", got, want)
	}
	dir1 := filepath.Join(root, "state/deploy", r1.id)
	wantOrigin := "[origin]\ncontainer-image-reference = " + r1.image.ImageRef + "\n\n[boot]\nboot_type = bls\ndigest = " + d1.BootDigest +
		"\n\n[image]\nmanifest_digest = " + r1.image.ManifestDigest + "\n"
	if got := readFile(t, filepath.Join(dir1, r1.id+".origin")); got != wantOrigin {
		t.Errorf("origin:\n%s\nwant:\n%s", got, wantOrigin)
	}
	if l, err := os.Readlink(filepath.Join(dir1, "var")); err != nil || l != "../../os/default/var" {
		t.Errorf("var -> %q (%v), want ../../os/default/var", l, err)
	}
	expected := r1.img.ExpectedTree()
	// composefs-rs keeps only security.capability of a layer's xattrs
	// (transform_for_oci), so that is all the image and its copy have.
	cmp := testimage.CompareOptions{IgnoreDirModTime: true, Xattr: func(n string) bool { return n == "security.capability" }}
	if err := subtree(expected, "etc").CompareDir(filepath.Join(dir1, "etc"), cmp); err != nil {
		t.Errorf("state etc: %v", err)
	}
	if err := subtree(expected, "var").CompareDir(filepath.Join(root, "state/os/default/var"), cmp); err != nil {
		t.Errorf("shared var: %v", err)
	}
	for _, f := range []string{"vmlinuz", "initrd"} {
		src := map[string]string{"vmlinuz": testimage.PathKernel, "initrd": testimage.PathInitramfs}[f]
		want, err := readEntry(expected[src])
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(root, "boot/bootc_composefs-"+r1.id, f)); got != want {
			t.Errorf("boot %s differs from the image's %s", f, src)
		}
	}

	cmd1 := cmdlineOf(t, entry1)
	expectSlots(t, load(t, h, cmd1), r1.id, "", "")

	// Local changes on release 1: one file edited, one added, one removed,
	// one directory added.
	etc1 := filepath.Join(dir1, "etc")
	writeFile(t, filepath.Join(etc1, "hostname"), "edited-on-1\n")
	writeFile(t, filepath.Join(etc1, "local.conf"), "mine\n")
	if err := os.Remove(filepath.Join(etc1, "foo.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(etc1, "local.d/sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(etc1, "local.d/sub/x"), "x\n")

	d2, err := h.Stage(r2.image, r1.id)
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(root, "boot/loader/entries.staged")
	// Both releases have the same kernel and initramfs: the new entry
	// shares release 1's boot directory, as bootc's
	// find_vmlinuz_initrd_duplicate makes it.
	if got := readFile(t, filepath.Join(staged, "bootc_cfs-2.0-1.conf")); got != "title cfs-test 2.0\nversion 2.0\nlinux /boot/bootc_composefs-"+r1.id+
		"/vmlinuz\ninitrd /boot/bootc_composefs-"+r1.id+"/initrd\noptions root=UUID=6e1d2f5a rw console=ttyS0 composefs="+r2.id+"\nsort-key bootc-cfs-0\n" {
		t.Errorf("staged primary entry:\n%s", got)
	}
	if got := readFile(t, filepath.Join(staged, "bootc_cfs-1.0-0.conf")); got != strings.Replace(want, "sort-key bootc-cfs-0", "sort-key bootc-cfs-1", 1) {
		t.Errorf("staged secondary entry:\n%s", got)
	}
	if ents, _ := os.ReadDir(staged); len(ents) != 2 {
		t.Errorf("entries.staged holds %d files, want 2", len(ents))
	}
	if got := readFile(t, filepath.Join(h.RunDir, "composefs/staged-deployment")); got != `{"depl_id":"`+r2.id+`","finalization_locked":false}` {
		t.Errorf("staged-deployment: %s", got)
	}
	if got := readFile(t, entry1); got != want {
		t.Errorf("staging changed the live entry:\n%s", got)
	}
	expectSlots(t, load(t, h, cmd1), r1.id, r2.id, "")
	if d2.ID != r2.id {
		t.Errorf("staged id %s, want %s", d2.ID, r2.id)
	}

	fin, err := h.Finalize(r1.id, etc1)
	if err != nil {
		t.Fatal(err)
	}
	if fin != r2.id {
		t.Errorf("finalized %s, want %s", fin, r2.id)
	}
	if _, err := os.Lstat(staged); !os.IsNotExist(err) {
		t.Errorf("entries.staged still there after finalize (%v)", err)
	}
	entry2 := filepath.Join(root, "boot/loader/entries/bootc_cfs-2.0-1.conf")
	cmd2 := cmdlineOf(t, entry2)
	if !strings.Contains(cmd2, "composefs="+r2.id) {
		t.Fatalf("first entry after finalize boots %q", cmd2)
	}
	// "Boot" release 2: its own command line.
	expectSlots(t, load(t, h, cmd2), r2.id, "", r1.id)

	etc2 := filepath.Join(root, "state/deploy", r2.id, "etc")
	if got := readFile(t, filepath.Join(etc2, "hostname")); got != "edited-on-1\n" {
		t.Errorf("hostname edited on 1 is %q on 2", got)
	}
	if got := readFile(t, filepath.Join(etc2, "local.conf")); got != "mine\n" {
		t.Errorf("local.conf added on 1 is %q on 2", got)
	}
	if got := readFile(t, filepath.Join(etc2, "local.d/sub/x")); got != "x\n" {
		t.Errorf("local.d/sub/x added on 1 is %q on 2", got)
	}
	if fi, err := os.Stat(filepath.Join(etc2, "local.d/sub")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("local.d/sub on 2: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(etc2, "foo.conf")); !os.IsNotExist(err) {
		t.Errorf("foo.conf removed on 1 exists on 2 (%v)", err)
	}
	// Untouched files take release 2's version.
	if got := readFile(t, filepath.Join(etc2, "motd")); got != "Welcome to cfs-test 2.0\n" {
		t.Errorf("motd on 2 is %q", got)
	}

	back, err := h.Rollback()
	if err != nil {
		t.Fatal(err)
	}
	if back != r1.id {
		t.Errorf("rollback boots %s next, want %s", back, r1.id)
	}
	// bootc's rollback writes both entries under os ID "bootc".
	rolled := filepath.Join(root, "boot/loader/entries/bootc_bootc-1.0-1.conf")
	if got, want := readFile(t, rolled), strings.Replace(want, "sort-key bootc-cfs-0", "sort-key bootc-bootc-0", 1); got != want {
		t.Errorf("entry of 1 after rollback:\n%s\nwant:\n%s", got, want)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "boot/loader/entries")); len(ents) != 2 || ents[0].Name() != "bootc_bootc-1.0-1.conf" || ents[1].Name() != "bootc_bootc-2.0-0.conf" {
		t.Errorf("entries after rollback: %v", ents)
	}
	s := load(t, h, cmd2)
	expectSlots(t, s, r2.id, "", r1.id)
	if !s.RollbackQueued {
		t.Error("rollback is not queued after Rollback")
	}
	if _, err := h.Rollback(); err != nil {
		t.Fatal(err)
	}
	if s := load(t, h, cmd2); s.RollbackQueued {
		t.Error("rollback still queued after the second Rollback")
	}
}

func readEntry(e *testimage.Entry) (string, error) {
	var b strings.Builder
	_, err := ioCopy(&b, e)
	return b.String(), err
}

func ioCopy(b *strings.Builder, e *testimage.Entry) (int64, error) { return io.Copy(b, e.Open()) }

// TestFinalizeTwice: a second finalizer (bootc's service after ours) finds
// the staged deployment already first and does nothing.
func TestFinalizeTwice(t *testing.T) {
	f := newInstalled(t, "")
	h, root, r1, r2 := f.h, f.h.Root, f.r1, f.r2
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	// Announced by a bootc that stages as we do; ours is gone with the
	// first finalize below, bootc's would stay: put it back.
	announce, err := os.ReadFile(h.StagedFile())
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(root, "state/deploy", r1.id, "etc")
	if id, err := h.Finalize(r1.id, etc); err != nil || id != r2.id {
		t.Fatalf("first finalize: %q %v", id, err)
	}
	writeFile(t, h.StagedFile(), string(announce))
	if id, err := h.Finalize(r1.id, etc); err != nil || id != "" {
		t.Fatalf("second finalize: %q %v, want nothing done", id, err)
	}
	// Announced but never staged: an error naming what is missing.
	os.RemoveAll(filepath.Join(root, "boot/loader/entries"))
	if _, err := h.Finalize(r1.id, etc); err == nil || !strings.Contains(err.Error(), "entries.staged is missing") {
		t.Fatalf("finalize without staged entries: %v", err)
	}
}

// TestExchangeWithoutRenameExchange: where the filesystem refuses
// RENAME_EXCHANGE (FAT ESPs), finalize and rollback swap the entries with
// plain renames and leave nothing behind.
func TestExchangeWithoutRenameExchange(t *testing.T) {
	saved := renameat2
	t.Cleanup(func() { renameat2 = saved })
	renameat2 = func(int, string, int, string, uint) error { return unix.EINVAL }
	f := newInstalled(t, "")
	h, root, r1, r2 := f.h, f.h.Root, f.r1, f.r2
	cmd1 := cmdlineOf(t, filepath.Join(root, "boot/loader/entries/bootc_cfs-1.0-1.conf"))
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Finalize(r1.id, filepath.Join(root, "state/deploy", r1.id, "etc")); err != nil {
		t.Fatal(err)
	}
	cmd2 := "rw composefs=" + r2.id
	expectSlots(t, load(t, h, cmd2), r2.id, "", r1.id)
	if _, err := h.Rollback(); err != nil {
		t.Fatal(err)
	}
	expectSlots(t, load(t, h, cmd1), r1.id, "", r2.id)
	ents, _ := os.ReadDir(filepath.Join(root, "boot/loader"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "entries" {
		t.Errorf("boot/loader holds %v, want only entries", names)
	}
}

// TestPrune: after two upgrades the first deployment is named by no entry;
// Prune removes its state directory and kernel, keeps the two that boot,
// and a pending staging's.
func TestPrune(t *testing.T) {
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	r1 := pullReleaseSeed(t, root, scratch, 21, "1.0")
	r2 := pullReleaseSeed(t, root, scratch, 22, "2.0")
	r3 := pullReleaseSeed(t, root, scratch, 23, "3.0")
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo, r3.image.Repo = repo, repo, repo
	h := &Host{Root: root, RunDir: t.TempDir()}
	if _, err := h.Install(r1.image, []string{"rw"}); err != nil {
		t.Fatal(err)
	}
	step := func(from, to release) {
		t.Helper()
		if _, err := h.Stage(to.image, from.id); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Finalize(from.id, filepath.Join(root, "state/deploy", from.id, "etc")); err != nil {
			t.Fatal(err)
		}
	}
	step(r1, r2)
	if removed, err := h.Prune(r2.id); err != nil || len(removed) != 0 {
		t.Fatalf("prune with both deployments named: %v %v", removed, err)
	}
	step(r2, r3)
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(root, p)); return err == nil }
	if !exists("state/deploy/"+r1.id) || !exists("boot/bootc_composefs-"+r1.id) {
		t.Fatal("release 1 is gone before Prune")
	}
	// A staging killed half-way left a temporary directory.
	os.MkdirAll(filepath.Join(root, "state/.tmp-deploy-"+strings.Repeat("0", 128)), 0o755)
	removed, err := h.Prune(r3.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Errorf("removed %v, want release 1's state and kernel and the leftover", removed)
	}
	if exists("state/deploy/"+r1.id) || exists("boot/bootc_composefs-"+r1.id) {
		t.Error("release 1 survived Prune")
	}
	for _, r := range []release{r2, r3} {
		if !exists("state/deploy/"+r.id) || !exists("boot/bootc_composefs-"+r.id) {
			t.Errorf("release %s was pruned", r.img.Options.Version)
		}
	}
	expectSlots(t, load(t, h, "rw composefs="+r3.id), r3.id, "", r2.id)
	checkHost(t, h)
}

// TestStageKargsD: staging keeps the booted command line but for what
// the images' kargs.d change: arguments only release 1 shipped go, those
// release 2 adds come, the installer's and the admin's stay.
func TestStageKargsD(t *testing.T) {
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	gen := func(version, kargs string) release {
		img, err := testimage.Generate(testimage.Options{Seed: 21, Version: version, UTF8Names: true, Bootable: true,
			Files: map[string]string{"usr/lib/bootc/kargs.d/10-cfs.toml": kargs}})
		if err != nil {
			t.Fatal(err)
		}
		return pullImage(t, root, scratch, img, "ostree-unverified-image:docker://quay.io/example/os:"+version)
	}
	r1 := gen("1.0", `kargs = ["quiet", "cfs.old=1"]`)
	r2 := gen("2.0", `kargs = ["quiet", "cfs.new=2 cfs.more"]`)
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root}
	if _, err := h.Install(r1.image, []string{"root=UUID=1", "rw", "quiet", "cfs.old=1", "admin=x"}); err != nil {
		t.Fatal(err)
	}
	d2, err := h.Stage(r2.image, r1.id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cmdlineOf(t, d2.Entry), "root=UUID=1 rw quiet admin=x composefs="+r2.id+" cfs.new=2 cfs.more"; got != want {
		t.Errorf("staged options\n%s\nwant\n%s", got, want)
	}
}

// TestFinalizeEtcConflict: a path that is a directory in the running /etc
// and a file in the new image cannot be merged; finalize says so and the
// entries stay as they were (the staged deployment is still staged).
func TestFinalizeEtcConflict(t *testing.T) {
	f := newInstalled(t, "")
	h, root, r1, r2 := f.h, f.h.Root, f.r1, f.r2
	etc1 := filepath.Join(root, "state/deploy", r1.id, "etc")
	os.Remove(filepath.Join(etc1, "motd"))
	if err := os.Mkdir(filepath.Join(etc1, "motd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	// A change the merge would carry, were it not refused.
	writeFile(t, filepath.Join(etc1, "hostname"), "conflicted\n")
	_, err := h.Finalize(r1.id, etc1)
	if !errors.Is(err, ErrEtcConflict) || !strings.Contains(err.Error(), "/etc/motd") {
		t.Fatalf("finalize over a conflict: %v", err)
	}
	if got := readFile(t, filepath.Join(root, "state/deploy", r2.id, "etc/hostname")); got == "conflicted\n" {
		t.Error("a refused merge wrote into the new deployment's etc")
	}
	expectSlots(t, load(t, h, "rw composefs="+r1.id), r1.id, r2.id, "")
}

// TestStageOtherOSID: bootc names the demoted booted entry after the new
// image's os ID (file name and sort-key), not its own.
func TestStageOtherOSID(t *testing.T) {
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	r1 := pullReleaseSeed(t, root, scratch, 41, "1.0")
	img2, err := testimage.Generate(testimage.Options{Seed: 42, Version: "2.0", OSID: "other-os", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	r2 := pullImage(t, root, scratch, img2, "ostree-unverified-image:docker://quay.io/example/os:2.0")
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root, RunDir: t.TempDir()}
	if _, err := h.Install(r1.image, []string{"rw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(root, "boot/loader/entries.staged")
	ents, _ := os.ReadDir(staged)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "bootc_other_os-1.0-0.conf bootc_other_os-2.0-1.conf" {
		t.Fatalf("staged entries %v", names)
	}
	if got := readFile(t, filepath.Join(staged, "bootc_other_os-1.0-0.conf")); !strings.HasSuffix(got, "\nsort-key bootc-other-os-1\n") || !strings.Contains(got, "composefs="+r1.id) {
		t.Errorf("demoted entry:\n%s", got)
	}
	if got := readFile(t, filepath.Join(staged, "bootc_other_os-2.0-1.conf")); !strings.HasSuffix(got, "\nsort-key bootc-other-os-0\n") {
		t.Errorf("new entry:\n%s", got)
	}
}
