// Package nativehost writes composefs-native bootc hosts as bootc does
// (reference/bootc.md §1.2, containers-storage.md §6): a deployment is
// state/deploy/<id>/ (a writable copy of the image's /etc, the shared /var
// link, the origin) plus the boot artifacts and bootloader entry that put
// composefs=<id> on the kernel command line. It installs the first
// deployment, stages an upgrade (loader/entries.staged and
// /run/composefs/staged-deployment, which bootc's own finalize service
// understands), finalizes it (three-way /etc merge, entries exchanged with
// renameat2(RENAME_EXCHANGE)) and rolls back (entry order swapped).
//
// What others can see is written last and atomically: the state
// directory and boot artifacts are complete and durable before an entry
// names them, so a crash or a full disk never leaves a bootloader entry
// pointing at something missing.
package nativehost

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/composefs"
)

// Bootloader names the bootloader that reads the entries, as bootc does.
type Bootloader string

const (
	// Grub is GRUB classic: type #1 entries and kernels in /boot, UKIs
	// chainloaded from boot/grub2/user.cfg.
	Grub Bootloader = "grub"
	// Systemd is systemd-boot: entries, kernels and UKIs on the ESP.
	Systemd Bootloader = "systemd"
)

// Host is where a composefs-native host's pieces are.
type Host struct {
	// Root is the physical root: composefs/, state/ (and boot/ unless
	// BootDir says otherwise).
	Root string
	// BootDir is the mounted /boot of GRUB hosts; default Root/boot.
	BootDir string
	// BootPrefix is the path of BootDir as the bootloader sees it, which
	// prefixes linux/initrd in entries: "/boot" when /boot is a directory
	// of the root filesystem, "/" when it is a partition. "" decides as
	// bootc does: "/" when BootDir is on another filesystem than Root.
	BootPrefix string
	// ESP is the mounted EFI system partition: where systemd-boot's
	// entries and kernels go, and every UKI.
	ESP string
	// ESPUUID is the ESP's filesystem UUID: GRUB finds the UKIs it
	// chainloads by it. Install writes it to grub2/efiuuid.cfg (which
	// user.cfg sources) when GRUB boots UKIs.
	ESPUUID string
	// Bootloader defaults to Grub.
	Bootloader Bootloader
	// UKIKey is the key of a systemd-boot entry that boots a UKI: KeyEfi
	// or KeyUKI; "" decides as bootc does (KeyUKI with systemd ≥ 258).
	UKIKey string
	// UKIAddons names the image's UKI addons Install puts beside the UKI
	// (bootc install --uki-addon NAME: the file name without .addon.efi).
	// None is the default, as with bootc; Stage writes none, as bootc's
	// upgrade does.
	UKIAddons []string
	// RunDir is the running system's /run, where the staged deployment is
	// announced (composefs/staged-deployment); "" writes no announcement
	// (a disk image: the staged entries say it).
	RunDir string
}

// Image is what a deployment boots.
type Image struct {
	Repo           *composefs.Repository
	ManifestDigest string // sha256:<hex>, recorded in the origin ([image] manifest_digest)
	// ID is the fs-verity digest of the EROFS image the kernel command
	// line names (composefs=<id>): bootc's boot image
	// (composefs.image.boot). Its /etc is what the deployment copies.
	ID []byte
	// Source is the EROFS image the boot artifacts are taken from (the
	// image as pulled, composefs.image.v1: the boot image has /boot
	// emptied). nil means ID.
	Source []byte
	// ImageRef is the origin's container-image-reference, e.g.
	// "ostree-unverified-image:docker://quay.io/org/os:42".
	ImageRef string
}

// Deployment is a deployment written by Install or Stage.
type Deployment struct {
	ID         string // hex; state/deploy/<ID>
	Dir        string
	BootType   string // BootBLS or BootUKI
	BootDigest string // sha256 hex of vmlinuz‖initrd or the UKI's .linux‖.initrd
	OS         OSRelease
	// Entry is the bootloader file that boots it (after Install; after
	// Stage, the staged one).
	Entry string
	// Addons are the UKI addons Install wrote (file names), and
	// MissingAddons the names in Host.UKIAddons the image has no addon
	// for (bootc passes over them).
	Addons, MissingAddons []string
}

const (
	typeOneDirPrefix = "bootc_composefs-"
	stateDeploy      = "state/deploy"
	sharedVar        = "state/os/default/var"
)

func (h *Host) bootloader() Bootloader {
	if h.Bootloader == "" {
		return Grub
	}
	return h.Bootloader
}

func (h *Host) bootDir() string {
	if h.BootDir != "" {
		return h.BootDir
	}
	return filepath.Join(h.Root, "boot")
}

func (h *Host) bootPrefix() string {
	if h.BootPrefix != "" {
		return h.BootPrefix
	}
	if SeparateFS(h.Root, h.bootDir()) {
		return "/"
	}
	return "/boot"
}

// SeparateFS reports whether dir is on another filesystem than root (a
// mount point of its own, as bootc's is_mountpoint("boot") sees /boot);
// false when either cannot be read.
func SeparateFS(root, dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(root, &a) != nil || unix.Stat(dir, &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// LoaderDir is the directory holding entries/ and entries.staged/.
func (h *Host) LoaderDir() string {
	if h.bootloader() == Systemd {
		return filepath.Join(h.ESP, "loader")
	}
	return filepath.Join(h.bootDir(), "loader")
}

// StagedFile is /run/composefs/staged-deployment under RunDir.
func (h *Host) StagedFile() string {
	return filepath.Join(h.RunDir, "composefs", "staged-deployment")
}

func (h *Host) check() error {
	if h.Root == "" {
		return errors.New("nativehost: no physical root given")
	}
	switch h.bootloader() {
	case Grub:
	case Systemd:
		if h.ESP == "" {
			return errors.New("nativehost: systemd-boot keeps its entries on the ESP: give the ESP")
		}
	default:
		return fmt.Errorf("nativehost: unknown bootloader %q (grub or systemd)", h.Bootloader)
	}
	switch h.UKIKey {
	case "", KeyEfi, KeyUKI:
	default:
		return fmt.Errorf("nativehost: unknown UKI entry key %q (efi or uki)", h.UKIKey)
	}
	return nil
}

// prepared is an image read and checked, ready to be written.
type prepared struct {
	id, manifest, ref string
	tree, src         *imageTree
	res               *bootResources
	os                OSRelease
	digest            string
	ukiLabel          string
}

func (h *Host) prepare(img Image) (*prepared, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	if img.Repo == nil || len(img.ID) == 0 {
		return nil, errors.New("nativehost: no repository or image id")
	}
	if !strings.HasPrefix(img.ManifestDigest, "sha256:") || len(img.ManifestDigest) != 71 {
		return nil, fmt.Errorf("nativehost: manifest digest %q is not sha256:<64 hex>", img.ManifestDigest)
	}
	if img.ImageRef == "" || strings.ContainsAny(img.ImageRef, "\n\r") {
		return nil, fmt.Errorf("nativehost: image reference %q cannot go in an origin file", img.ImageRef)
	}
	p := &prepared{id: hex.EncodeToString(img.ID), manifest: img.ManifestDigest, ref: img.ImageRef}
	var err error
	if p.tree, err = openImageTree(img.Repo, img.ID); err != nil {
		return nil, err
	}
	p.src = p.tree
	if img.Source != nil && hex.EncodeToString(img.Source) != p.id {
		if p.src, err = openImageTree(img.Repo, img.Source); err != nil {
			return nil, err
		}
	}
	if p.res, err = findBootResources(p.src); err != nil {
		return nil, err
	}
	osr := []byte(nil)
	if n, err := p.src.lookup("/usr/lib/os-release"); err != nil {
		return nil, err
	} else if n != nil {
		if osr, err = p.src.readFile(n, 64<<10); err != nil {
			return nil, err
		}
	}
	p.os = parseOSRelease(osr, p.id)
	switch p.res.typ {
	case BootBLS:
		if p.digest, err = p.src.bootDigest(p.res.vmlinuz, p.res.initrd); err != nil {
			return nil, err
		}
	case BootUKI:
		if err := h.prepareUKI(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// writeState writes state/deploy/<id>/ complete under a temporary name in
// state/ and renames it into place after a syncfs, so that the name never
// exists without its content. withVar also fills the shared /var from the
// image, which only the first deployment does (bootc copies /var at
// install, never at upgrade).
func (h *Host) writeState(p *prepared, withVar bool) (string, error) {
	state := filepath.Join(h.Root, "state")
	deploy := filepath.Join(h.Root, stateDeploy)
	if err := os.MkdirAll(deploy, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(deploy, p.id)
	if _, err := os.Lstat(final); err == nil {
		return "", fmt.Errorf("%s already exists", final)
	}
	varDir := filepath.Join(h.Root, sharedVar)
	if withVar {
		if err := h.writeVar(p, varDir); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(varDir, 0o755); err != nil {
		return "", err
	}

	tmp := filepath.Join(state, ".tmp-deploy-"+p.id)
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	etc, err := p.tree.lookupNoFollow("/etc")
	if err != nil {
		return "", err
	}
	if etc != nil && etc.IsDir() {
		if err := p.tree.extract(etc, filepath.Join(tmp, "etc")); err != nil {
			return "", fmt.Errorf("copying /etc of image %s: %w", p.id, err)
		}
	} else if err := os.Mkdir(filepath.Join(tmp, "etc"), 0o755); err != nil {
		return "", err
	}
	// A fresh /etc is not "updated" (ostree's and systemd's
	// ConditionNeedsUpdate= marker).
	if err := os.Remove(filepath.Join(tmp, "etc", ".updated")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	rel, err := filepath.Rel(final, varDir)
	if err != nil {
		return "", err
	}
	if err := os.Symlink(rel, filepath.Join(tmp, "var")); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, p.id+".origin"), originText(p.ref, p.res.typ, p.digest, p.manifest), 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Join(tmp, p.id+".origin"), 0o644); err != nil {
		return "", err
	}
	if err := syncfs(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	ok = true
	return final, atomicfile.SyncDir(deploy)
}

func (h *Host) writeVar(p *prepared, varDir string) error {
	if _, err := os.Lstat(varDir); err == nil {
		return nil // a shared /var already exists: it is the host's, keep it
	}
	parent := filepath.Dir(varDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	v, err := p.tree.lookupNoFollow("/var")
	if err != nil {
		return err
	}
	if v == nil || !v.IsDir() {
		return os.Mkdir(varDir, 0o755)
	}
	tmp := filepath.Join(parent, ".tmp-var")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := p.tree.extract(v, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("copying /var of image %s: %w", p.id, err)
	}
	if err := syncfs(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, varDir); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return atomicfile.SyncDir(parent)
}

// writeTypeOne puts vmlinuz and initrd in bootc_composefs-<id>/ of the
// boot directory (reusing a directory that holds the same pair, as bootc
// does) and returns the entry for it.
func (h *Host) writeTypeOne(p *prepared, options string) (*entry, error) {
	dir, prefix := h.bootDir(), h.bootPrefix()
	if h.bootloader() == Systemd {
		dir, prefix = filepath.Join(h.ESP, "EFI", "Linux"), "/EFI/Linux"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name, err := findDuplicateBootDir(dir, p.digest)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = typeOneDirPrefix + p.id
		final := filepath.Join(dir, name)
		// Same name, other bytes: a leftover no live entry can use (a
		// live entry for this id was refused before).
		if err := os.RemoveAll(final); err != nil {
			return nil, err
		}
		tmp := filepath.Join(dir, ".tmp-"+name)
		if err := os.RemoveAll(tmp); err != nil {
			return nil, err
		}
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return nil, err
		}
		if err := p.src.writeFileSynced(p.res.vmlinuz, filepath.Join(tmp, "vmlinuz")); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		if err := p.src.writeFileSynced(p.res.initrd, filepath.Join(tmp, "initrd")); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		if err := atomicfile.SyncDir(tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		if err := os.Rename(tmp, final); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		if err := atomicfile.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	return &entry{
		Title:   p.os.Title,
		Version: p.os.Version,
		Linux:   path.Join(prefix, name, "vmlinuz"),
		Initrd:  []string{path.Join(prefix, name, "initrd")},
		Options: options,
		SortKey: sortKey(p.os.ID, true),
	}, nil
}

func syncfs(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", p, err)
	}
	return nil
}
