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
	// addons are the image's UKI addons: every *.addon.efi in a
	// subdirectory of the directories UKIs lie in (composefs-rs's
	// Type2Entry::load_all), in its order, /boot/EFI/Linux first.
	addons []*erofs.Node
}

// How UKI addons are named (containers-storage.md §6.3).
const (
	addonSuffix    = ".addon.efi"
	addonDirSuffix = ".extra.d" // after the UKI's file name
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
	var ukis, addons []*erofs.Node
	if d, err := t.lookup(bootimage.UKIDir); err != nil {
		return nil, err
	} else if d != nil && d.IsDir() {
		ukis = appendUKIs(ukis, d)
		addons = appendAddons(addons, d, true)
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
				addons = appendAddons(addons, c, true)
			}
		}
	}
	if len(ukis) > 0 {
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

// appendAddons adds the *.addon.efi files in the subdirectories of d
// (recursively), in name order.
func appendAddons(out []*erofs.Node, d *erofs.Node, top bool) []*erofs.Node {
	for _, c := range d.Children {
		switch c.Inode().Mode & erofs.TypeMask {
		case erofs.TypeDir:
			out = appendAddons(out, c, false)
		case erofs.TypeRegular:
			if !top && strings.HasSuffix(c.Name, addonSuffix) {
				out = append(out, c)
			}
		}
	}
	return out
}

// selectAddons picks the addons bootc install --uki-addon NAME names (the
// file name without .addon.efi), one per file name, the last found
// winning as it does when bootc writes them in turn. It returns the
// names that matched no addon too.
func selectAddons(all []*erofs.Node, names []string) (picked []*erofs.Node, missing []string) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	found := map[string]bool{}
	byFile := map[string]*erofs.Node{}
	var order []string
	for _, a := range all {
		n := strings.TrimSuffix(a.Name, addonSuffix)
		if !want[n] {
			continue
		}
		found[n] = true
		if byFile[a.Name] == nil {
			order = append(order, a.Name)
		}
		byFile[a.Name] = a
	}
	sort.Strings(order)
	for _, f := range order {
		picked = append(picked, byFile[f])
	}
	for _, n := range names {
		if !found[n] {
			missing = append(missing, n)
			found[n] = true
		}
	}
	return picked, missing
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
