package nativehost

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/bootimage"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/kargsd"
)

// Boot types, as the origin file spells them.
const (
	BootBLS = "bls" // kernel and initramfs, a type #1 entry with composefs=<id>
	BootUKI = "uki" // a unified kernel image carrying composefs=<id> itself
)

// bootResources is what an image boots, found as composefs-boot's
// get_boot_resources does (type #1 entries, then UKIs, then
// /usr/lib/modules/<kver>/vmlinuz), from the image as pulled (not the
// boot image, whose /boot is emptied).
type bootResources struct {
	typ     string
	kver    string
	vmlinuz *erofs.Node // BLS
	initrd  *erofs.Node // BLS
	uki     *erofs.Node // UKI
	// addons go beside the UKI on the ESP: the image's global ones
	// (/boot/loader/addons/*.addon.efi), then the UKI's own
	// (<uki>.efi.extra.d/*.addon.efi), which win on a name both have.
	addons []*erofs.Node
}

// Where an image keeps UKI addons (containers-storage.md §6.3).
const (
	globalAddonsDir = "/boot/loader/addons"
	addonSuffix     = ".addon.efi"
	addonDirSuffix  = ".extra.d" // after the UKI's file name
)

func findBootResources(t *imageTree) (*bootResources, error) {
	if d, err := t.lookup(bootimage.EntriesDir); err != nil {
		return nil, err
	} else if d != nil && d.IsDir() {
		for _, c := range d.Children {
			if strings.HasSuffix(c.Name, ".conf") {
				return nil, fmt.Errorf("image %s: found type #1 entries in /boot (%s/%s); bootc refuses these", t.id, bootimage.EntriesDir, c.Name)
			}
		}
	}
	// UKIs lie directly in these directories; *.efi further down are
	// addons (lib/bootimage.Detect, composefs-rs's Type2Entry::load_all).
	var ukis []*erofs.Node
	if d, err := t.lookup(bootimage.UKIDir); err != nil {
		return nil, err
	} else if d != nil && d.IsDir() {
		ukis = appendUKIs(ukis, d)
	}
	modules, err := t.lookup(bootimage.ModulesDir)
	if err != nil {
		return nil, err
	}
	var kvers []*erofs.Node
	if modules != nil && modules.IsDir() {
		for _, c := range modules.Children { // sorted by name
			if c.Inode().Mode&erofs.TypeMask == erofs.TypeDir {
				kvers = append(kvers, c)
				ukis = appendUKIs(ukis, c)
			}
		}
	}
	if len(ukis) > 0 {
		addons, err := ukiAddons(t, ukis[0])
		if err != nil {
			return nil, err
		}
		return &bootResources{typ: BootUKI, uki: ukis[0], addons: addons}, nil
	}
	for _, k := range kvers {
		v, i := k.Lookup("vmlinuz"), k.Lookup("initramfs.img")
		if v == nil || v.Inode().Mode&erofs.TypeMask != erofs.TypeRegular {
			continue
		}
		if i == nil || i.Inode().Mode&erofs.TypeMask != erofs.TypeRegular {
			return nil, fmt.Errorf("image %s: %s/%s/vmlinuz has no initramfs.img beside it", t.id, bootimage.ModulesDir, k.Name)
		}
		return &bootResources{typ: BootBLS, kver: k.Name, vmlinuz: v, initrd: i}, nil
	}
	return nil, fmt.Errorf("image %s is not bootable: no UKI in %s or %s/<kver>/, no %s/<kver>/vmlinuz", t.id, bootimage.UKIDir, bootimage.ModulesDir, bootimage.ModulesDir)
}

// ukiAddons are the addons that go with uki, in name order, one per name.
func ukiAddons(t *imageTree, uki *erofs.Node) ([]*erofs.Node, error) {
	byName := map[string]*erofs.Node{}
	add := func(d *erofs.Node) {
		if d == nil || !d.IsDir() {
			return
		}
		for _, c := range d.Children {
			if c.Inode().Mode&erofs.TypeMask == erofs.TypeRegular && strings.HasSuffix(c.Name, addonSuffix) {
				byName[c.Name] = c
			}
		}
	}
	global, err := t.lookup(globalAddonsDir)
	if err != nil {
		return nil, err
	}
	add(global)
	add(uki.Parent().Lookup(uki.Name + addonDirSuffix))
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*erofs.Node, len(names))
	for i, n := range names {
		out[i] = byName[n]
	}
	return out, nil
}

func appendUKIs(out []*erofs.Node, d *erofs.Node) []*erofs.Node {
	for _, c := range d.Children {
		if c.Inode().Mode&erofs.TypeMask == erofs.TypeRegular && strings.HasSuffix(c.Name, ".efi") {
			out = append(out, c)
		}
	}
	return out
}

// bootDigest is bootc's boot digest of a type #1 deployment:
// sha256(vmlinuz ‖ initramfs), hex.
func (t *imageTree) bootDigest(files ...*erofs.Node) (string, error) {
	h := sha256.New()
	for _, n := range files {
		if err := t.copyTo(h, n); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (t *imageTree) copyTo(w io.Writer, n *erofs.Node) error {
	in := n.Inode()
	if in.Digest == nil {
		_, err := w.Write(in.Content)
		return err
	}
	f, err := t.repo.OpenObject(in.Digest)
	if err != nil {
		return fmt.Errorf("image %s: %s: %w", t.id, n.Path(), err)
	}
	defer f.Close()
	got, err := io.Copy(w, f)
	if err != nil {
		return fmt.Errorf("image %s: %s: %w", t.id, n.Path(), err)
	}
	if uint64(got) != in.Size {
		return fmt.Errorf("image %s: %s: object holds %d bytes, the image says %d", t.id, n.Path(), got, in.Size)
	}
	return nil
}

// writeFileSynced writes one file of the image to dst (new) with mode
// 0644 and fsyncs it: boot filesystems (vfat ESPs) do not reflink and a
// bootloader reads them after a power cut.
func (t *imageTree) writeFileSynced(n *erofs.Node, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := t.copyTo(f, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", dst, err)
	}
	return f.Close()
}

// fileSHA256 hashes files on disk in order (for finding a boot directory
// that already holds the same kernel and initramfs).
func fileSHA256(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// findDuplicateBootDir is bootc's find_vmlinuz_initrd_duplicate: a
// bootc_composefs-* directory whose vmlinuz ‖ initrd hash to digest.
func findDuplicateBootDir(dir, digest string) (string, error) {
	names, err := filepath.Glob(filepath.Join(dir, typeOneDirPrefix+"*"))
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	for _, d := range names {
		if strings.Contains(filepath.Base(d), ".tmp") {
			continue
		}
		sum, err := fileSHA256(filepath.Join(d, "vmlinuz"), filepath.Join(d, "initrd"))
		if err != nil {
			continue // incomplete or foreign: not a match
		}
		if sum == digest {
			return filepath.Base(d), nil
		}
	}
	return "", nil
}

// kargsD reads the image's /usr/lib/bootc/kargs.d (lib/kargsd).
func (t *imageTree) kargsD() ([]string, error) {
	d, err := t.lookup(kargsd.Dir)
	if err != nil || d == nil || !d.IsDir() {
		return nil, err
	}
	var files []kargsd.File
	for _, c := range d.Children {
		if c.Inode().Mode&erofs.TypeMask != erofs.TypeRegular {
			continue
		}
		data, err := t.readFile(c, 1<<20)
		if err != nil {
			return nil, err
		}
		files = append(files, kargsd.File{Name: c.Name, Data: data})
	}
	args, err := kargsd.Parse(files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", t.id, err)
	}
	return args, nil
}

// upgradeKargs is bootc's compute_new_kargs: the arguments only the old
// image's kargs.d had leave the command line, those only the new one's
// has join it; the rest (the installer's, the admin's) stay.
func upgradeKargs(options string, old, new []string) string {
	inOld, inNew := map[string]bool{}, map[string]bool{}
	for _, a := range old {
		inOld[a] = true
	}
	for _, a := range new {
		inNew[a] = true
	}
	var out []string
	for _, a := range kargsd.SplitCmdline(options) {
		if inOld[a] && !inNew[a] {
			continue
		}
		out = append(out, a)
	}
	have := map[string]bool{}
	for _, a := range out {
		have[a] = true
	}
	for _, a := range new {
		if !inOld[a] && !have[a] {
			out = append(out, a)
			have[a] = true
		}
	}
	return strings.Join(out, " ")
}
