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

	"github.com/cfs-project/cfs/lib/erofs"
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
}

func findBootResources(t *imageTree) (*bootResources, error) {
	if d, err := t.lookup("/boot/loader/entries"); err != nil {
		return nil, err
	} else if d != nil && d.IsDir() {
		for _, c := range d.Children {
			if strings.HasSuffix(c.Name, ".conf") {
				return nil, fmt.Errorf("image %s: found type #1 entries in /boot (/boot/loader/entries/%s); bootc refuses these", t.id, c.Name)
			}
		}
	}
	var ukis []*erofs.Node
	if d, err := t.lookup("/boot/EFI/Linux"); err != nil {
		return nil, err
	} else if d != nil && d.IsDir() {
		collectUKIs(d, &ukis)
	}
	modules, err := t.lookup("/usr/lib/modules")
	if err != nil {
		return nil, err
	}
	var kvers []*erofs.Node
	if modules != nil && modules.IsDir() {
		for _, c := range modules.Children {
			if c.Inode().Mode&erofs.TypeMask == erofs.TypeDir {
				kvers = append(kvers, c)
			}
		}
	}
	for _, k := range kvers {
		collectUKIs(k, &ukis)
	}
	if len(ukis) > 0 {
		return &bootResources{typ: BootUKI, uki: ukis[0]}, nil
	}
	sort.Slice(kvers, func(i, j int) bool { return kvers[i].Name < kvers[j].Name })
	for _, k := range kvers {
		v, i := k.Lookup("vmlinuz"), k.Lookup("initramfs.img")
		if v == nil || i == nil {
			continue
		}
		if v.Inode().Mode&erofs.TypeMask != erofs.TypeRegular || i.Inode().Mode&erofs.TypeMask != erofs.TypeRegular {
			return nil, fmt.Errorf("image %s: /usr/lib/modules/%s: vmlinuz or initramfs.img is not a regular file", t.id, k.Name)
		}
		return &bootResources{typ: BootBLS, kver: k.Name, vmlinuz: v, initrd: i}, nil
	}
	return nil, fmt.Errorf("image %s is not bootable: no UKI under /boot/EFI/Linux or /usr/lib/modules/<kver>/, no /usr/lib/modules/<kver>/vmlinuz with initramfs.img", t.id)
}

func collectUKIs(d *erofs.Node, out *[]*erofs.Node) {
	for _, c := range d.Children {
		in := c.Inode()
		switch {
		case in.Mode&erofs.TypeMask == erofs.TypeDir:
			collectUKIs(c, out)
		case in.Mode&erofs.TypeMask == erofs.TypeRegular && strings.HasSuffix(c.Name, ".efi") && !strings.HasSuffix(c.Name, ".addon.efi"):
			*out = append(*out, c)
		}
	}
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
