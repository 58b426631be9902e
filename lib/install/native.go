package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/bootimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/nativehost"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// NativeOriginReference is the container-image-reference of a
// composefs-native deployment as bootc writes it (write_composefs_state):
// always ostree-unverified-image: and the image in containers/image form
// (docker://NAME for registry images, TRANSPORT:NAME otherwise), whatever
// signature an ostree-style reference asked for.
func NativeOriginReference(ref string) string {
	if r, err := bootcconv.ParseImageReference(OriginReference(ref)); err == nil {
		if r.Transport == "registry" {
			return "ostree-unverified-image:docker://" + r.Image
		}
		return "ostree-unverified-image:" + r.Transport + ":" + r.Image
	}
	return "ostree-unverified-image:" + ref
}

// nativeKargs is the command line of a composefs-native install, in the
// order of bootc's composefs backend (setup_composefs_bls_boot): the root
// filesystem's arguments (root=, rw, boot=), every --karg, composefs=<id>
// (a placeholder here: setKarg fills it in), for a separate /boot the
// mount systemd makes of it (no /etc/fstab: /etc is the deployment's),
// and last the image's kargs.d, each unless the line holds it already
// (bootc's compute_new_kargs against no previous image). bootc's
// composefs backend does not use the install configuration's kargs.
func nativeKargs(rootArgs, cli, kargsD []string) []string {
	out := append(append([]string{}, rootArgs...), cli...)
	out = append(out, "composefs=")
	for _, a := range rootArgs {
		if v, ok := strings.CutPrefix(a, "boot="); ok {
			out = append(out, "systemd.mount-extra="+v+":/boot:auto:ro")
		}
	}
	have := map[string]bool{}
	for _, a := range out {
		have[a] = true
	}
	for _, a := range kargsD {
		if !have[a] {
			out = append(out, a)
			have[a] = true
		}
	}
	return out
}

// setKarg sets key=value in args, in the place of the first key= (or
// bare key), else at the end.
func setKarg(args []string, key, value string) []string {
	out := append([]string{}, args...)
	for i, a := range out {
		if k, _, _ := strings.Cut(a, "="); k == key {
			out[i] = key + "=" + value
			return out
		}
	}
	return append(out, key+"="+value)
}

// sealed reports whether the pulled image carries a sealed UKI, which
// makes the host composefs-native without being asked.
func sealed(pres *pull.Result) bool {
	return pres.Boot != nil && len(pres.Boot.Sealed()) > 0
}

// espFor is the ESP an install writes to: opts.ESP, else ROOT/boot/efi
// when that is a directory.
func espFor(opts *Options) string {
	if opts.ESP != "" {
		return opts.ESP
	}
	p := filepath.Join(opts.Root, "boot", "efi")
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	return ""
}

// bootloaderFor is opts.Bootloader, else systemd when the ESP holds
// systemd-boot, else grub.
func bootloaderFor(opts *Options, esp string) nativehost.Bootloader {
	switch opts.Bootloader {
	case "systemd":
		return nativehost.Systemd
	case "grub":
		return nativehost.Grub
	}
	if esp != "" {
		if _, err := os.Stat(filepath.Join(esp, "EFI", "systemd")); err == nil {
			return nativehost.Systemd
		}
	}
	return nativehost.Grub
}

// installNative makes ROOT a composefs-native host: the image and its boot
// image are in ROOT/composefs already; nativehost writes state/deploy/<id>/
// and the boot artifacts, then the entry naming composefs=<boot image id>.
func installNative(ctx context.Context, opts *Options, repo *composefs.Repository, pres *pull.Result, mode sysroot.Unified, res *Result) error {
	if pres.Boot == nil || len(pres.BootImageID) == 0 {
		why := pres.BootNote
		if why == "" {
			why = "it has no kernel under /usr/lib/modules and no UKI"
		}
		return fmt.Errorf("%s cannot boot as a composefs-native host: %s", opts.Source, why)
	}
	if err := pres.Boot.CheckSealed(pres.BootImageID); err != nil {
		return err
	}
	res.BootVerity = fmt.Sprintf("%x", pres.BootImageID)
	res.SealedUKI = sealed(pres)
	res.Commit, res.Deployment, res.Stateroot = "", "", ""
	root := opts.Root
	esp := espFor(opts)
	if len(opts.Kargs) > 0 && pres.Boot.Kind == bootimage.UKI {
		// bootc's require_no_kargs_for_uki: a UKI carries its own
		// command line.
		return fmt.Errorf("%s boots a UKI: cannot use externally specified kernel arguments (--karg) with UKI", opts.Source)
	}
	h := &nativehost.Host{Root: root, ESP: esp, Bootloader: bootloaderFor(opts, esp), UKIKey: opts.UKIKey, UKIAddons: opts.UKIAddons}
	if pres.Boot.Kind == bootimage.UKI && h.Bootloader == nativehost.Grub && esp != "" {
		// GRUB chainloads the UKI from the ESP it finds by filesystem
		// UUID: bootc reads it with blkid and writes grub2/efiuuid.cfg,
		// which user.cfg sources.
		uuid, err := fsUUID(esp)
		if err != nil {
			return fmt.Errorf("GRUB finds the UKI on the ESP by its filesystem UUID: %w", err)
		}
		h.ESPUUID = uuid
	}
	// Entries name kernels by their path as the bootloader sees /boot
	// (nativehost: "/" on a /boot partition). nativeKargs made the
	// command line; composefs= goes where bootc puts it.
	res.Kargs = setKarg(res.Kargs, "composefs", res.BootVerity)
	kargs := res.Kargs
	// bootc's containers-storage lives in composefs/bootc on native hosts,
	// reached through ostree/bootc for the tools that look there
	// (/usr/lib/bootc/storage -> /sysroot/ostree/bootc/storage); bootc
	// makes both at every native install (ensure_composefs_bootc_link),
	// unified or not: logically bound images use them too.
	if err := os.MkdirAll(filepath.Join(root, composefsDir, "bootc"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "ostree"), 0o755); err != nil {
		return err
	}
	if err := os.Symlink("../composefs/bootc", filepath.Join(root, "ostree", "bootc")); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if mode.Enabled() {
		res.phase("containers-storage")
		if err := toContainersStorage(root, repo, pull.SourceRecord(pres.Source, pres, repo), mode); err != nil {
			return err
		}
	}
	res.phase("deploy")
	opts.logf("writing the composefs-native deployment %s", res.BootVerity)
	dep, err := h.Install(nativehost.Image{
		Repo: repo, ManifestDigest: pres.Source.ManifestDigest, ID: pres.BootImageID, Source: pres.ImageID,
		ImageRef: NativeOriginReference(opts.TargetImgref()),
	}, kargs)
	if err != nil {
		return err
	}
	res.Deployment = dep.Dir
	res.BootEntries = []string{dep.Entry}
	res.UKIAddons = dep.Addons
	if len(dep.MissingAddons) > 0 {
		// bootc passes over them silently.
		opts.logf("warning: the image has no UKI addon named %s", strings.Join(dep.MissingAddons, ", "))
	}
	if mode.Enabled() {
		if err := sysroot.WriteBootcJSON(root, mode); err != nil {
			return err
		}
	}
	return nil
}
