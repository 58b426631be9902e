package main

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/install"
	"github.com/cfs-project/cfs/lib/pull"
)

// mountImage mounts composefs image id of the repository under root with
// cfs-image mount and unmounts it when the test ends.
func mountImage(t *testing.T, root, id string) string {
	t.Helper()
	mnt := t.TempDir()
	repo := filepath.Join(root, "composefs")
	run(t, bins["cfs-image"], "mount", "--objects", filepath.Join(repo, "objects"), filepath.Join(repo, "images", id), mnt)
	t.Cleanup(func() {
		if out, err := exec.Command(bins["cfs-image"], "umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("cfs-image umount: %v\n%s", err, out)
		}
	})
	return mnt
}

// TestInstallNativeHost: --composefs-native makes a native host (GRUB,
// type #1 entry in ROOT/boot): state/deploy/<boot image id>/ with bootc's
// origin, the entry naming composefs=<id> after the kernel arguments;
// cfs-status boots it; the image the deployment pins, mounted with
// cfs-image mount, is the image's tree, and its boot image the same tree
// with /boot and /sysroot emptied.
func TestInstallNativeHost(t *testing.T) {
	files := kargsFiles()
	// bootc's composefs backend leaves the install configuration's
	// kargs out (ostree hosts get them).
	files["usr/lib/bootc/install/10-kargs.toml"] = "[install]\nkargs = [\"from-config\"]\n"
	tg := newTarget(t, "xfs", files)
	res := tg.install(t, "--composefs-native", "--karg", "console=tty1", "--karg", "quiet")
	if res.HostKind != install.KindComposefs || len(res.BootVerity) != 128 || res.SealedUKI || res.Commit != "" || len(res.BootEntries) != 1 {
		t.Fatalf("summary %+v", res)
	}
	entry := res.BootEntries[0]
	if entry != filepath.Join(tg.root, "boot/loader/entries/bootc_cfs-1.0-1.conf") {
		t.Errorf("entry %s", entry)
	}
	cmdline, options := bootCmdline(t, entry)
	uuid := strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", tg.fs.Loop))
	// bootc's composefs backend: root filesystem, --karg, composefs=,
	// then the image's kargs.d, each unless already there.
	want := "root=UUID=" + uuid + " rw console=tty1 quiet composefs=" + res.BootVerity + " console=ttyS0,115200 mine=1"
	if options != want {
		t.Errorf("options %q, want %q", options, want)
	}
	if strings.Join(res.Kargs, " ") != want {
		t.Errorf("reported kernel arguments %q, want %q", res.Kargs, want)
	}
	dep := filepath.Join(tg.root, "state/deploy", res.BootVerity)
	origin, err := os.ReadFile(filepath.Join(dep, res.BootVerity+".origin"))
	wantOrigin := "[origin]\ncontainer-image-reference = ostree-unverified-image:" + tg.ref + "\n\n[boot]\nboot_type = bls\n"
	if err != nil || !strings.HasPrefix(string(origin), wantOrigin) || !strings.HasSuffix(string(origin), "[image]\nmanifest_digest = "+res.ManifestDigest+"\n") {
		t.Errorf("origin %q (%v)", origin, err)
	}
	if target, err := os.Readlink(filepath.Join(dep, "var")); err != nil || target != "../../os/default/var" {
		t.Errorf("var -> %q (%v)", target, err)
	}
	if _, err := os.Stat(filepath.Join(dep, "etc/os-release")); err != nil && !os.IsNotExist(err) {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(tg.root, "ostree/repo")); err == nil {
		t.Errorf("a native host has an ostree repository")
	}
	// bootc's compatibility link, made at every native install.
	if target, err := os.Readlink(filepath.Join(tg.root, "ostree/bootc")); err != nil || target != "../composefs/bootc" {
		t.Errorf("ostree/bootc -> %q (%v)", target, err)
	}
	if fi, err := os.Stat(filepath.Join(tg.root, "composefs/bootc")); err != nil || !fi.IsDir() {
		t.Errorf("composefs/bootc: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(tg.root, ".bootc-aleph.json")); err == nil {
		t.Errorf("a native install wrote .bootc-aleph.json (bootc writes it on ostree hosts only)")
	}
	if fi, err := os.Stat(filepath.Join(tg.root, "composefs")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("composefs/: %v %v", fi, err)
	}
	if n := checkEntries(t, tg.root); n != 1 {
		t.Errorf("%d entries", n)
	}

	human, doc := status(t, tg.root, cmdline)
	booted, _ := doc["status"].(map[string]any)["booted"].(map[string]any)
	image, _ := booted["image"].(map[string]any)
	if image["imageDigest"] != res.ManifestDigest {
		t.Errorf("cfs-status booted image %v, want %s\n%s", image, res.ManifestDigest, human)
	}

	skipRun := func(p string) bool { return p == "run" || strings.HasPrefix(p, "run/") }
	mnt := mountImage(t, tg.root, res.ImageVerity)
	if err := tg.img.ExpectedTree().CompareDir(mnt, testimage.CompareOptions{
		Xattr: func(name string) bool { return name == "security.capability" }, Skip: skipRun,
	}); err != nil {
		t.Errorf("the deployment's image: %v", err)
	}
	bootMnt := mountImage(t, tg.root, res.BootVerity)
	if err := tg.img.ExpectedTree().CompareDir(bootMnt, testimage.CompareOptions{
		Xattr: func(name string) bool { return name == "security.capability" },
		Skip: func(p string) bool {
			return skipRun(p) || p == "boot" || strings.HasPrefix(p, "boot/") || p == "sysroot" || strings.HasPrefix(p, "sysroot/")
		},
	}); err != nil {
		t.Errorf("the boot image: %v", err)
	}
	if ents, err := os.ReadDir(filepath.Join(bootMnt, "boot")); err != nil || len(ents) != 0 {
		t.Errorf("the boot image's /boot: %v %v", ents, err)
	}
}

// newESP is a FAT32 filesystem, as an EFI system partition is, when the
// kernel has vfat; else a tmpfs, the other kind of separate filesystem
// without reflinks or renameat2 exchange that the code must cope with.
func newESP(t *testing.T) *testfs.FS {
	if fss, err := os.ReadFile("/proc/filesystems"); err == nil && strings.Contains(string(fss), "\tvfat\n") {
		return testfs.Vfat(t, 0)
	}
	t.Logf("this kernel has no vfat: the ESP is a tmpfs")
	return testfs.Tmpfs(t, 64<<20)
}

// bootImageID pulls img into a scratch repository and returns the id of
// its boot image, which a sealed UKI names.
func bootImageID(t *testing.T, img *testimage.Image) string {
	t.Helper()
	scratch := t.TempDir()
	layout := filepath.Join(scratch, "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	repo, err := composefs.Create(filepath.Join(scratch, "repo"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	policy, err := pull.PolicyContext(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	defer policy.Destroy()
	src, err := pull.Open(context.Background(), "oci:"+layout+":latest", nil, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	res, err := pull.ToComposefs(context.Background(), repo, src, pull.Options{})
	if err != nil || res.BootImageID == nil {
		t.Fatalf("pull: %v (boot: %s)", err, res.BootNote)
	}
	return hex.EncodeToString(res.BootImageID)
}

// TestInstallSealedUKI: an image carrying a UKI sealed for its boot image
// installs as a composefs-native host with no flag, the UKI on a vfat ESP
// (systemd-boot entry there); the same image with a UKI sealed for another
// id is refused with both ids, and no entry is written anywhere.
func TestInstallSealedUKI(t *testing.T) {
	testfs.RequireFile(t, testimage.UKIStub, "make deps installs systemd-boot-efi")
	testfs.RequireTool(t, "objcopy")
	tg := newTarget(t, "xfs", nil)
	esp := newESP(t)
	// Addons under /boot leave the boot image, and so the seal, as they are.
	opts := testimage.Options{Seed: 15, Version: "1.0", UTF8Names: true, Bootable: true, Files: map[string]string{
		"boot/EFI/Linux/cfs-test.efi.extra.d/console.addon.efi": "console addon",
		"boot/EFI/Linux/cfs-test.efi.extra.d/debug.addon.efi":   "debug addon",
	}}
	plain, err := testimage.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	id := bootImageID(t, plain)
	push := func(tag, sealedFor string) string {
		o := opts
		if o.UKI, err = testimage.SealedUKI(t.TempDir(), o, sealedFor); err != nil {
			t.Fatal(err)
		}
		img, err := testimage.Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		tg.reg.Push(t, "os", tag, img)
		return "docker://" + tg.reg.Host + "/os:" + tag
	}
	good, wrong := push("sealed", id), push("wrong", strings.Repeat("ab", 64))

	t.Run("wrong composefs= refused", func(t *testing.T) {
		root := filepath.Join(tg.root, "wrong")
		os.Mkdir(root, 0o755)
		r := cfsInstall("to-filesystem", "--tls-verify=false", "--insecure-policy", "--root-mount-spec", "UUID=0000", "--esp", esp.Dir, "--bootloader", "systemd", root, wrong)
		if r.code != 1 || !strings.Contains(r.stderr, id) || !strings.Contains(r.stderr, strings.Repeat("ab", 64)) {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if n := checkEntries(t, root); n != 0 {
			t.Errorf("%d entries after a refused install", n)
		}
		if ents, _ := os.ReadDir(filepath.Join(esp.Dir, "loader/entries")); len(ents) != 0 {
			t.Errorf("entries on the ESP after a refused install: %v", ents)
		}
		for _, p := range []string{filepath.Join(root, "boot/grub2/user.cfg"), filepath.Join(root, "state"), filepath.Join(esp.Dir, "EFI/Linux/bootc")} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s exists after a refused install", p)
			}
		}
	})

	t.Run("--karg refused", func(t *testing.T) {
		// bootc: "Cannot use externally specified kernel arguments with
		// UKI"; the UKI carries its command line.
		root := filepath.Join(tg.root, "karg")
		os.Mkdir(root, 0o755)
		r := cfsInstall("to-filesystem", "--tls-verify=false", "--insecure-policy", "--root-mount-spec", "UUID=0000", "--esp", esp.Dir, "--bootloader", "systemd", "--karg", "console=tty1", root, good)
		if r.code != 1 || !strings.Contains(r.stderr, "kernel arguments") || !strings.Contains(r.stderr, "UKI") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if n := checkEntries(t, root); n != 0 {
			t.Errorf("%d entries after a refused install", n)
		}
		if ents, _ := os.ReadDir(filepath.Join(esp.Dir, "loader/entries")); len(ents) != 0 {
			t.Errorf("entries on the ESP after a refused install: %v", ents)
		}
	})

	t.Run("GRUB chainloads", func(t *testing.T) {
		// GRUB classic: the UKI on the ESP, a menuentry in user.cfg, and
		// the ESP's filesystem UUID in efiuuid.cfg, read with blkid as
		// bootc does (so the ESP is a block device here).
		grubESP := testfs.Ext4(t, 64*testfs.MiB)
		uuid := strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", grubESP.Loop))
		root := filepath.Join(tg.root, "grub")
		os.Mkdir(root, 0o755)
		r := cfsInstall("to-filesystem", "--tls-verify=false", "--insecure-policy", "--root-mount-spec", "UUID=0000", "--esp", grubESP.Dir, "--bootloader", "grub", root, good)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if got, err := os.ReadFile(filepath.Join(root, "boot/grub2/efiuuid.cfg")); err != nil || string(got) != `set EFI_PART_UUID="`+uuid+`"` {
			t.Errorf("efiuuid.cfg %q (%v), want the ESP's UUID %s", got, err, uuid)
		}
		if got, err := os.ReadFile(filepath.Join(root, "boot/grub2/user.cfg")); err != nil || !strings.Contains(string(got), "chainloader /EFI/Linux/bootc/bootc_composefs-"+id+".efi\n") {
			t.Errorf("user.cfg:\n%s (%v)", got, err)
		}
		if _, err := os.Stat(filepath.Join(grubESP.Dir, "EFI/Linux/bootc/bootc_composefs-"+id+".efi")); err != nil {
			t.Errorf("UKI on the ESP: %v", err)
		}
	})

	root := filepath.Join(tg.root, "good")
	os.Mkdir(root, 0o755)
	r := cfsInstall("to-filesystem", "--tls-verify=false", "--insecure-policy", "--json", "--root-mount-spec", "UUID=0000", "--esp", esp.Dir, "--bootloader", "systemd",
		"--uki-addon", "console", "--uki-addon", "absent", root, good)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	res := decode(t, r.stdout)
	if res.HostKind != install.KindComposefs || !res.SealedUKI || res.BootVerity != id || len(res.BootEntries) != 1 {
		t.Fatalf("summary %+v", res)
	}
	// Only the addon named goes on the ESP (bootc's --uki-addon); a name
	// without an addon is passed over, with a warning.
	addonDir := filepath.Join(esp.Dir, "EFI/Linux/bootc/bootc_composefs-"+id+".efi.extra.d")
	if ents, err := os.ReadDir(addonDir); err != nil || len(ents) != 1 || ents[0].Name() != "console.addon.efi" {
		t.Errorf("addons on the ESP: %v (%v)", ents, err)
	}
	if len(res.UKIAddons) != 1 || res.UKIAddons[0] != "console.addon.efi" || !strings.Contains(r.stderr, "no UKI addon named absent") {
		t.Errorf("reported addons %v; stderr:\n%s", res.UKIAddons, r.stderr)
	}
	uki := filepath.Join(esp.Dir, "EFI/Linux/bootc/bootc_composefs-"+id+".efi")
	if fi, err := os.Stat(uki); err != nil || fi.Size() == 0 {
		t.Fatalf("UKI on the ESP: %v", err)
	}
	data, _ := os.ReadFile(res.BootEntries[0])
	if !strings.Contains(string(data), "/EFI/Linux/bootc/bootc_composefs-"+id+".efi") {
		t.Errorf("entry %s:\n%s", res.BootEntries[0], data)
	}
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmdline, []byte("composefs="+id+" rw\n"), 0o644)
	human := run(t, bins["cfs-status"], "--sysroot", root, "--cmdline", cmdline, "--esp", esp.Dir)
	if !strings.Contains(human, strings.TrimPrefix(good, "docker://")) {
		t.Errorf("cfs-status does not show the booted image:\n%s", human)
	}
	// The stand-in ESP holds nothing a FAT one could not.
	testfs.CheckFATSafe(t, esp.Dir)
}

// TestInstallSeparateBoot: ROOT/boot a filesystem of its own, as bootc
// handles it. Both kinds get boot=UUID=<its uuid>; the ostree deployment
// mounts it read-only from its /etc/fstab; the native entry names the
// kernel at the top of that filesystem (GRUB reads it as /) and mounts it
// with systemd.mount-extra=.
func TestInstallSeparateBoot(t *testing.T) {
	for _, kind := range []string{install.KindOstree, install.KindComposefs} {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, "xfs", nil)
			boot := testfs.Ext4(t, 128*testfs.MiB)
			mnt := filepath.Join(tg.root, "boot")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, "mount", "--bind", boot.Dir, mnt)
			t.Cleanup(func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v\n%s", mnt, err, out)
				}
			})
			uuid := "UUID=" + strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", boot.Loop))
			var args []string
			if kind == install.KindComposefs {
				args = append(args, "--composefs-native")
			}
			res := tg.install(t, args...)
			if res.BootMountSpec != uuid || len(res.Kargs) < 3 || res.Kargs[2] != "boot="+uuid || len(res.BootEntries) != 1 {
				t.Fatalf("summary %+v, want boot=%s", res, uuid)
			}
			if !strings.HasPrefix(res.BootEntries[0], boot.Dir+"/") && !strings.HasPrefix(res.BootEntries[0], mnt+"/") {
				t.Errorf("entry %s is not on /boot", res.BootEntries[0])
			}
			cmdline, options := bootCmdline(t, res.BootEntries[0])
			entry, _ := os.ReadFile(res.BootEntries[0])
			if kind == install.KindOstree {
				fstab, err := os.ReadFile(filepath.Join(res.Deployment, "etc/fstab"))
				if err != nil || string(fstab) != uuid+" /boot auto ro 0 0\n" {
					t.Errorf("deployment's /etc/fstab %q (%v)", fstab, err)
				}
				if !strings.Contains(options, " boot="+uuid+" ") || strings.Contains(options, "mount-extra") {
					t.Errorf("options %q", options)
				}
			} else {
				id := res.BootVerity
				if !strings.Contains(string(entry), "\nlinux /bootc_composefs-"+id+"/vmlinuz\ninitrd /bootc_composefs-"+id+"/initrd\n") {
					t.Errorf("entry:\n%s", entry)
				}
				if _, err := os.Stat(filepath.Join(boot.Dir, "bootc_composefs-"+id, "vmlinuz")); err != nil {
					t.Errorf("kernel not on /boot: %v", err)
				}
				if !strings.HasSuffix(options, " boot="+uuid+" composefs="+id+" systemd.mount-extra="+uuid+":/boot:auto:ro") {
					t.Errorf("options %q", options)
				}
				if fstab, _ := os.ReadFile(filepath.Join(tg.root, "state/deploy", id, "etc/fstab")); strings.Contains(string(fstab), " /boot ") {
					t.Errorf("a native deployment's /etc/fstab mounts /boot:\n%s", fstab)
				}
			}
			human, doc := status(t, tg.root, cmdline)
			booted, _ := doc["status"].(map[string]any)["booted"].(map[string]any)
			if image, _ := booted["image"].(map[string]any); image["imageDigest"] != res.ManifestDigest {
				t.Errorf("cfs-status:\n%s", human)
			}
		})
	}
}
