package nativehost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/bootimage"
)

// pullUKIRelease stores a release carrying a UKI sealed for sealFor, or,
// when sealFor is "", for the release's own boot image: the image is
// pulled without the UKI first to learn that id (the boot image does not
// depend on what is under /boot).
func pullUKIRelease(t *testing.T, root, scratch string, version, sealFor string) (release, []byte, testimage.UKISpec) {
	return pullUKIReleaseFiles(t, root, scratch, version, sealFor, nil)
}

// pullUKIReleaseFiles is pullUKIRelease with files added to the image
// (under /boot they leave the boot image, and so the seal, as they are).
func pullUKIReleaseFiles(t *testing.T, root, scratch string, version, sealFor string, files map[string]string) (release, []byte, testimage.UKISpec) {
	t.Helper()
	return pullUKIReleaseSpec(t, root, scratch, version, sealFor, files, "uki", nil)
}

// pullUKIReleaseSpec is pullUKIReleaseFiles with the UKI's sections
// edited before it is built, tagged uki-name:VERSION.
func pullUKIReleaseSpec(t *testing.T, root, scratch string, version, sealFor string, files map[string]string, name string, edit func(*testimage.UKISpec)) (release, []byte, testimage.UKISpec) {
	t.Helper()
	testfs.RequireFile(t, testimage.UKIStub, "systemd-boot-efi")
	opts := testimage.Options{Seed: 31, Version: version, UTF8Names: true, Bootable: true, Files: files}
	if sealFor == "" {
		plain, err := testimage.Generate(opts)
		if err != nil {
			t.Fatal(err)
		}
		sealFor = pullImage(t, root, scratch, plain, "ostree-unverified-image:docker://quay.io/example/plain:"+version).id
	}
	spec := testimage.UKIFor(opts, "composefs="+sealFor+" rw")
	if edit != nil {
		edit(&spec)
	}
	uki, err := testimage.BuildUKI(scratch, spec)
	if err != nil {
		t.Fatal(err)
	}
	opts.UKI = uki
	img, err := testimage.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	return pullImage(t, root, scratch, img, "ostree-unverified-image:docker://quay.io/example/"+name+":"+version), uki, spec
}

// espFS is the ESP of a test: FAT where the kernel has it (this
// sandbox's does not), else ext4; TestExchangeWithoutRenameExchange
// covers FAT's missing RENAME_EXCHANGE either way.
func espFS(t *testing.T) *testfs.FS {
	t.Helper()
	if data, err := os.ReadFile("/proc/filesystems"); err == nil && bytes.Contains(data, []byte("\tvfat\n")) {
		return testfs.Vfat(t, 0)
	}
	t.Log("the kernel has no vfat: the ESP is ext4")
	return testfs.Ext4(t, 64*testfs.MiB)
}

func ukiDigest(s testimage.UKISpec) string {
	sum := sha256.Sum256(append(append([]byte(nil), s.Linux...), s.Initrd...))
	return hex.EncodeToString(sum[:])
}

// TestUpgradeCycleUKISystemd: a sealed UKI on a vfat ESP with
// systemd-boot: install, stage, finalize (vfat has no RENAME_EXCHANGE),
// boot, roll back.
func TestUpgradeCycleUKISystemd(t *testing.T) {
	fs := testfs.XFS(t, 0)
	esp := espFS(t)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	// Addons: *.addon.efi in the subdirectories of the UKI's directory,
	// as composefs-rs finds them (not /boot/loader/addons, which it does
	// not read); only those named are installed (bootc install
	// --uki-addon NAME), none at staging (bootc's upgrade).
	r1, uki1, spec1 := pullUKIReleaseFiles(t, root, scratch, "1.0", "", map[string]string{
		"boot/loader/addons/console.addon.efi":                "global console 1",
		"boot/loader/addons/debug.addon.efi":                  "global debug 1",
		"boot/loader/addons/README":                           "not an addon",
		"boot/EFI/Linux/cfs-test.efi.extra.d/debug.addon.efi": "uki debug 1",
		"boot/EFI/Linux/cfs-test.efi.extra.d/quiet.addon.efi": "uki quiet 1",
		"boot/EFI/Linux/cfs-test.efi.extra.d/notes.txt":       "not an addon",
		"boot/EFI/Linux/other.efi.extra.d/foreign.addon.efi":  "another UKI's",
	})
	r2, _, _ := pullUKIReleaseFiles(t, root, scratch, "2.0", "", map[string]string{
		"boot/EFI/Linux/cfs-test.efi.extra.d/debug.addon.efi": "uki debug 2",
	})
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root, ESP: esp.Dir, Bootloader: Systemd, RunDir: t.TempDir(), UKIKey: KeyEfi,
		UKIAddons: []string{"debug", "console", "foreign", "notes"}}
	addons := func(id string) map[string]string {
		out := map[string]string{}
		dir := filepath.Join(esp.Dir, "EFI/Linux/bootc/bootc_composefs-"+id+".efi.extra.d")
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			out[e.Name()] = readFile(t, filepath.Join(dir, e.Name()))
		}
		return out
	}

	d1, err := h.Install(r1.image, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"debug.addon.efi", "foreign.addon.efi"}; !slices.Equal(d1.Addons, want) || !slices.Equal(d1.MissingAddons, []string{"console", "notes"}) {
		t.Errorf("addons %v missing %v, want %v and [console notes]", d1.Addons, d1.MissingAddons, want)
	}
	if d1.BootType != BootUKI || d1.BootDigest != ukiDigest(spec1) {
		t.Errorf("boot type %s digest %s, want uki %s", d1.BootType, d1.BootDigest, ukiDigest(spec1))
	}
	ukiPath := filepath.Join(esp.Dir, "EFI/Linux/bootc/bootc_composefs-"+r1.id+".efi")
	if got, err := os.ReadFile(ukiPath); err != nil || !bytes.Equal(got, uki1) {
		t.Errorf("UKI on the ESP: %v, equal %v", err, bytes.Equal(got, uki1))
	}
	if got, want := addons(r1.id), map[string]string{"debug.addon.efi": "uki debug 1", "foreign.addon.efi": "another UKI's"}; !maps.Equal(got, want) {
		t.Errorf("addons of 1: %v, want %v", got, want)
	}
	entry1 := filepath.Join(esp.Dir, "loader/entries/bootc_cfs-1.0-1.conf")
	want1 := "title cfs-test 1.0 1.0\nversion 1.0\nefi /EFI/Linux/bootc/bootc_composefs-" + r1.id + ".efi\nsort-key bootc-cfs-0\n"
	if got := readFile(t, entry1); got != want1 {
		t.Errorf("entry:\n%s\nwant:\n%s", got, want1)
	}
	if got := readFile(t, filepath.Join(esp.Dir, "loader/loader.conf")); got != "timeout 5" {
		t.Errorf("loader.conf %q", got)
	}
	origin := readFile(t, filepath.Join(root, "state/deploy", r1.id, r1.id+".origin"))
	if !strings.Contains(origin, "[boot]\nboot_type = uki\ndigest = "+ukiDigest(spec1)+"\n") {
		t.Errorf("origin:\n%s", origin)
	}
	// The UKI's own command line boots it.
	cmd1 := spec1.Cmdline
	expectSlots(t, load(t, h, cmd1), r1.id, "", "")

	// Staging writes loader.conf too when it is missing, as bootc does.
	if err := os.Remove(filepath.Join(esp.Dir, "loader/loader.conf")); err != nil {
		t.Fatal(err)
	}
	// The next entry is written by a systemd-boot that reads "uki"; the
	// booted one keeps its "efi", and every reader takes both.
	h.UKIKey = KeyUKI
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(esp.Dir, "loader/entries.staged")
	if got := readFile(t, filepath.Join(staged, "bootc_cfs-1.0-0.conf")); got != strings.Replace(want1, "bootc-cfs-0", "bootc-cfs-1", 1) {
		t.Errorf("demoted entry:\n%s", got)
	}
	if got := readFile(t, filepath.Join(esp.Dir, "loader/loader.conf")); got != "timeout 5" {
		t.Errorf("loader.conf after staging %q", got)
	}
	want2 := "title cfs-test 2.0 2.0\nversion 2.0\nuki /EFI/Linux/bootc/bootc_composefs-" + r2.id + ".efi\nsort-key bootc-cfs-0\n"
	if got := readFile(t, filepath.Join(staged, "bootc_cfs-2.0-1.conf")); got != want2 {
		t.Errorf("staged entry:\n%s\nwant:\n%s", got, want2)
	}
	if got := addons(r2.id); len(got) != 0 {
		t.Errorf("addons of 2: %v, want none (bootc's upgrade writes none)", got)
	}
	// A discarded staging's UKI goes; the booted one keeps its addons;
	// staged again, the UKI is back.
	if err := h.discardStaged(); err != nil {
		t.Fatal(err)
	}
	removed, err := h.Prune(r1.id)
	if err != nil || len(addons(r1.id)) != 2 {
		t.Errorf("prune: removed %v (%v); addons of 1 %v", removed, err, addons(r1.id))
	}
	if _, err := os.Lstat(filepath.Join(esp.Dir, "EFI/Linux/bootc/bootc_composefs-"+r2.id+".efi")); !os.IsNotExist(err) {
		t.Errorf("UKI of 2 after prune: %v", err)
	}
	if _, err := h.Stage(r2.image, r1.id); err != nil || len(addons(r2.id)) != 0 {
		t.Fatalf("staged again: %v, addons %v", err, addons(r2.id))
	}
	expectSlots(t, load(t, h, cmd1), r1.id, r2.id, "")
	testfs.CheckFATSafe(t, esp.Dir)
	if fin, err := h.Finalize(r1.id, filepath.Join(root, "state/deploy", r1.id, "etc")); err != nil || fin != r2.id {
		t.Fatalf("finalize: %q %v", fin, err)
	}
	if _, err := os.Lstat(staged); !os.IsNotExist(err) {
		t.Errorf("entries.staged after finalize: %v", err)
	}
	if names, _ := filepath.Glob(filepath.Join(esp.Dir, "loader", ".*")); len(names) != 0 {
		t.Errorf("left behind on the ESP: %v", names)
	}
	cmd2 := "composefs=" + r2.id + " rw"
	expectSlots(t, load(t, h, cmd2), r2.id, "", r1.id)
	if back, err := h.Rollback(); err != nil || back != r1.id {
		t.Fatalf("rollback: %q %v", back, err)
	}
	if got := readFile(t, filepath.Join(esp.Dir, "loader/entries/bootc_bootc-1.0-1.conf")); got != strings.Replace(want1, "bootc-cfs-0", "bootc-bootc-0", 1) {
		t.Errorf("entry of 1 after rollback:\n%s", got)
	}
	if s := load(t, h, cmd2); !s.RollbackQueued {
		t.Error("rollback not queued")
	}
	// What is on the ESP now, a FAT filesystem holds as it is.
	testfs.CheckFATSafe(t, esp.Dir)
}

// TestUKIGrub: GRUB classic chainloads the UKI from user.cfg, in bootc's
// bytes; staging writes user.cfg.staged, finalize exchanges it.
func TestUKIGrub(t *testing.T) {
	fs := testfs.XFS(t, 0)
	esp := espFS(t)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	r1, _, spec1 := pullUKIRelease(t, root, scratch, "1.0", "")
	r2, _, _ := pullUKIRelease(t, root, scratch, "2.0", "")
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root, ESP: esp.Dir, ESPUUID: "6A1F-03C2", RunDir: t.TempDir()}
	if _, err := h.Install(r1.image, nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "boot/grub2/efiuuid.cfg")); got != "set EFI_PART_UUID=\"6A1F-03C2\"" {
		t.Errorf("efiuuid.cfg: %q", got)
	}
	prefix := "\nif [ -f ${config_directory}/efiuuid.cfg ]; then\n        source ${config_directory}/efiuuid.cfg\nfi\n"
	menu := func(version, id string) string {
		return "menuentry \"cfs-test " + version + " " + version + ": (" + id + ")\" {\ninsmod fat\ninsmod chain\nsearch --no-floppy --set=root --fs-uuid \"${EFI_PART_UUID}\"\nchainloader /EFI/Linux/bootc/bootc_composefs-" + id + ".efi\n}\n"
	}
	cfg := filepath.Join(root, "boot/grub2/user.cfg")
	if got := readFile(t, cfg); got != prefix+menu("1.0", r1.id) {
		t.Errorf("user.cfg:\n%s", got)
	}
	cmd1 := spec1.Cmdline
	expectSlots(t, load(t, h, cmd1), r1.id, "", "")
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cfg+".staged"); got != prefix+menu("2.0", r2.id)+menu("1.0", r1.id) {
		t.Errorf("user.cfg.staged:\n%s", got)
	}
	expectSlots(t, load(t, h, cmd1), r1.id, r2.id, "")
	if _, err := h.Finalize(r1.id, filepath.Join(root, "state/deploy", r1.id, "etc")); err != nil {
		t.Fatal(err)
	}
	cmd2 := "composefs=" + r2.id + " rw"
	expectSlots(t, load(t, h, cmd2), r2.id, "", r1.id)
	if _, err := h.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cfg); got != prefix+menu("1.0", r1.id)+menu("2.0", r2.id) {
		t.Errorf("user.cfg after rollback:\n%s", got)
	}
	// Staging with the rollback queued: bootc keeps user.cfg's first
	// menuentry (the rollback target) as the second, not the booted one.
	r3, _, _ := pullUKIRelease(t, root, scratch, "3.0", "")
	r3.image.Repo = repo
	if _, err := h.Stage(r3.image, r2.id); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cfg+".staged"); got != prefix+menu("3.0", r3.id)+menu("1.0", r1.id) {
		t.Errorf("user.cfg.staged with a rollback queued:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(root, "state/deploy", r2.id)); err != nil {
		t.Errorf("the booted deployment's state: %v", err)
	}
	// What is on the ESP now, a FAT filesystem holds as it is.
	testfs.CheckFATSafe(t, esp.Dir)
}

// TestUKIWrongSeal: a UKI sealed for another boot image is refused with
// both ids, before anything is on the ESP or any entry names it.
func TestUKIWrongSeal(t *testing.T) {
	fs := testfs.XFS(t, 0)
	esp := espFS(t)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	other := strings.Repeat("ab", 64)
	r, _, _ := pullUKIRelease(t, root, scratch, "1.0", other)
	r.image.Repo = openRepo(t, root)
	h := &Host{Root: root, ESP: esp.Dir, Bootloader: Systemd}
	_, err := h.Install(r.image, nil)
	var mm *bootimage.MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), r.id) {
		t.Fatalf("install of a UKI sealed for another image: %v", err)
	}
	for _, p := range []string{"loader", "EFI"} {
		if _, err := os.Lstat(filepath.Join(esp.Dir, p)); !os.IsNotExist(err) {
			t.Errorf("ESP has %s after the refusal (%v)", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "state/deploy", r.id)); !os.IsNotExist(err) {
		t.Errorf("state directory written for a refused image (%v)", err)
	}
}

// TestUKIWithoutName: a UKI whose .osrel names nothing (no PRETTY_NAME,
// NAME or ID), or that has no .osrel, is refused as bootc refuses it,
// with one line naming the UKI, before anything is on the ESP.
func TestUKIWithoutName(t *testing.T) {
	fs := testfs.XFS(t, 0)
	esp := espFS(t)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	var id string
	for _, tc := range []struct {
		name, osrel, want string
	}{
		{"noname", "VERSION_ID=1.0\nVARIANT_ID=bootc\n", "its .osrel has no PRETTY_NAME, NAME or ID"},
		{"noosrel", "", "has no .osrel section"},
	} {
		r, _, _ := pullUKIReleaseSpec(t, root, scratch, "1.0", id, nil, tc.name, func(s *testimage.UKISpec) { s.OSRelease = tc.osrel })
		id = r.id // the boot image does not depend on the UKI
		r.image.Repo = openRepo(t, root)
		h := &Host{Root: root, ESP: esp.Dir, Bootloader: Systemd}
		_, err := h.Install(r.image, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "boot/EFI/Linux/") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, p := range []string{"loader", "EFI"} {
			if _, err := os.Lstat(filepath.Join(esp.Dir, p)); !os.IsNotExist(err) {
				t.Errorf("%s: ESP has %s after the refusal (%v)", tc.name, p, err)
			}
		}
		if _, err := os.Lstat(filepath.Join(root, "state/deploy", r.id)); !os.IsNotExist(err) {
			t.Errorf("%s: state directory written for a refused image (%v)", tc.name, err)
		}
	}
}

// TestBLSSystemd: with systemd-boot a kernel and initramfs go to the ESP
// (EFI/Linux/bootc_composefs-<id>/) and the entries to ESP/loader.
func TestBLSSystemd(t *testing.T) {
	fs := testfs.XFS(t, 0)
	esp := espFS(t)
	root := fs.Path("sysroot")
	scratch := t.TempDir()
	r1 := pullReleaseSeed(t, root, scratch, 21, "1.0")
	r2 := pullReleaseSeed(t, root, scratch, 22, "2.0")
	repo := openRepo(t, root)
	r1.image.Repo, r2.image.Repo = repo, repo
	h := &Host{Root: root, ESP: esp.Dir, Bootloader: Systemd, RunDir: t.TempDir()}
	d1, err := h.Install(r1.image, []string{"rw"})
	if err != nil {
		t.Fatal(err)
	}
	want := "title cfs-test 1.0\nversion 1.0\nlinux /EFI/Linux/bootc_composefs-" + r1.id + "/vmlinuz\ninitrd /EFI/Linux/bootc_composefs-" + r1.id +
		"/initrd\noptions rw composefs=" + r1.id + "\nsort-key bootc-cfs-0\n"
	if d1.Entry != filepath.Join(esp.Dir, "loader/entries/bootc_cfs-1.0-1.conf") || readFile(t, d1.Entry) != want {
		t.Errorf("entry %s:\n%s\nwant:\n%s", d1.Entry, readFile(t, d1.Entry), want)
	}
	if _, err := os.Stat(filepath.Join(esp.Dir, "EFI/Linux/bootc_composefs-"+r1.id, "vmlinuz")); err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "boot")); !os.IsNotExist(err) {
		t.Errorf("systemd-boot host got a /boot under the root (%v)", err)
	}
	if _, err := h.Stage(r2.image, r1.id); err != nil {
		t.Fatal(err)
	}
	expectSlots(t, load(t, h, "rw composefs="+r1.id), r1.id, r2.id, "")
	if _, err := h.Finalize(r1.id, filepath.Join(root, "state/deploy", r1.id, "etc")); err != nil {
		t.Fatal(err)
	}
	expectSlots(t, load(t, h, "rw composefs="+r2.id), r2.id, "", r1.id)
	checkHost(t, h)
	// What is on the ESP now, a FAT filesystem holds as it is.
	testfs.CheckFATSafe(t, esp.Dir)
}

// TestUKIKeyFromBootctl: without a choice, the key is bootc's: "uki" from
// systemd 258 on (bootctl --version of the machine writing the entry),
// "efi" before, and when bootctl is missing or says something else.
func TestUKIKeyFromBootctl(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "bootctl")
	old := bootctl
	t.Cleanup(func() { bootctl = old })
	bootctl = fake
	h := &Host{}
	for out, want := range map[string]string{
		"systemd 258 (258.1-1)\n+PAM +AUDIT\n": KeyUKI,
		"systemd 259 (259.5-0ubuntu3)\n":       KeyUKI,
		"systemd 257 (257.9-1~deb13u1)\n":      KeyEfi,
		"bootctl from elsewhere\n":             KeyEfi,
	} {
		writeFile(t, fake, "#!/bin/sh\nprintf '%s' '"+out+"'\n")
		os.Chmod(fake, 0o755)
		if got := h.ukiKey(); got != want {
			t.Errorf("bootctl says %q: key %s, want %s", out, got, want)
		}
	}
	os.Remove(fake)
	if got := h.ukiKey(); got != KeyEfi {
		t.Errorf("no bootctl: key %s", got)
	}
	h.UKIKey = KeyUKI
	if got := h.ukiKey(); got != KeyUKI {
		t.Errorf("forced: key %s", got)
	}
	h = &Host{Root: dir, UKIKey: "efi2"}
	if err := h.check(); err == nil {
		t.Error("an unknown key is accepted")
	}
}
