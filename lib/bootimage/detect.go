package bootimage

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/fstree"
)

// Kind is how an image boots.
type Kind int

const (
	// None: the image carries no kernel; it is not bootable.
	None Kind = iota
	// BLS: a kernel and initramfs under /usr/lib/modules/<kver>/, booted
	// through a Type 1 (BLS) entry the installer writes.
	BLS
	// UKI: a unified kernel image, booted from the ESP.
	UKI
)

// String is the name bootc's origin files use for the boot type
// ("bls", "uki"), and "none".
func (k Kind) String() string {
	switch k {
	case BLS:
		return "bls"
	case UKI:
		return "uki"
	}
	return "none"
}

// Paths bootc looks at.
const (
	ModulesDir    = "/usr/lib/modules"
	UKIDir        = "/boot/EFI/Linux"
	EntriesDir    = "/boot/loader/entries"
	OSReleasePath = "/usr/lib/os-release"
)

// ObjectOpener opens the bytes of an external file of the tree by its
// fs-verity digest (a composefs repository's OpenObject).
type ObjectOpener func(id []byte) (io.ReadCloser, error)

// Boot is the boot payload of an image.
type Boot struct {
	Kind Kind
	// KernelVersion is the /usr/lib/modules/<kver> directory of the
	// kernel (BLS) or of the UKI, "" for a UKI under /boot/EFI/Linux.
	KernelVersion string
	// Vmlinuz and Initramfs are the absolute paths of the kernel and
	// initramfs in the image (BLS).
	Vmlinuz, Initramfs string
	// UKIs are the unified kernel images (UKI): first those under
	// /boot/EFI/Linux/, then those under /usr/lib/modules/<kver>/, each
	// in byte order of its path.
	UKIs []UKIFile
	// Addons are the UKI addons: *.efi files in subdirectories of those
	// directories (<uki>.efi.extra.d/...), absolute paths.
	Addons []string
	// OSRelease is /usr/lib/os-release, nil when the image has none as a
	// regular file.
	OSRelease OSRelease
}

// UKIFile is one UKI of an image.
type UKIFile struct {
	Path          string // absolute, in the image
	KernelVersion string // the /usr/lib/modules/<kver> it lies in, or ""
	Leaf          *fstree.Leaf
	Info          *UKIInfo
}

// Sealed returns the UKIs that carry composefs=<id>.
func (b *Boot) Sealed() []UKIFile {
	var out []UKIFile
	for _, u := range b.UKIs {
		if u.Info.Sealed() {
			out = append(out, u)
		}
	}
	return out
}

// CheckSealed checks every sealed UKI against the image's boot image id
// (its fs-verity digest): a UKI sealed for another id would boot nothing,
// and is a *MismatchError naming both.
func (b *Boot) CheckSealed(bootID []byte) error {
	want := fmt.Sprintf("%x", bootID)
	for _, u := range b.Sealed() {
		if u.Info.ComposefsID != want {
			return &MismatchError{Path: u.Path, Sealed: u.Info.ComposefsID, Boot: want}
		}
	}
	return nil
}

// Detect finds how the image rooted at root boots, as bootc does:
//   - any *.conf under /boot/loader/entries/ is an error (bootc refuses
//     Type 1 entries shipped in an image);
//   - *.efi directly in /boot/EFI/Linux/ or /usr/lib/modules/<kver>/ are
//     UKIs, *.efi deeper below them are addons; a UKI makes the image
//     Kind UKI;
//   - otherwise /usr/lib/modules/<kver>/vmlinuz (the first <kver> in byte
//     order that has one) makes it Kind BLS, and its initramfs.img must
//     be there too;
//   - otherwise the image is not bootable (Kind None, no error).
//
// open reads UKIs (their PE sections) and os-release; errors name the
// path in the image and what is wrong, on one line.
func Detect(root *fstree.Dir, open ObjectOpener) (*Boot, error) {
	if dir, err := lookupDir(root, EntriesDir); err != nil {
		return nil, err
	} else if dir != nil {
		for _, name := range dir.Names() {
			if strings.HasSuffix(name, ".conf") {
				return nil, fmt.Errorf("%s/%s: the image ships a Type 1 boot entry; bootc refuses images with entries in %s (ship a kernel under %s or a UKI instead)", EntriesDir, name, EntriesDir, ModulesDir)
			}
		}
	}
	b := &Boot{}
	if dir, err := lookupDir(root, UKIDir); err != nil {
		return nil, err
	} else if dir != nil {
		if err := b.findUKIs(dir, UKIDir, "", true, open); err != nil {
			return nil, err
		}
	}
	modules, err := lookupDir(root, ModulesDir)
	if err != nil {
		return nil, err
	}
	var kvers []string
	if modules != nil {
		for _, kver := range modules.Names() {
			dir, ok := modules.Get(kver).(*fstree.Dir)
			if !ok {
				continue
			}
			kvers = append(kvers, kver)
			if err := b.findUKIs(dir, ModulesDir+"/"+kver, kver, true, open); err != nil {
				return nil, err
			}
		}
	}
	if osr, err := readRegular(root, OSReleasePath, open, 1<<20); err != nil {
		return nil, err
	} else if osr != nil {
		b.OSRelease = ParseOSRelease(string(osr))
	}
	if len(b.UKIs) > 0 {
		b.Kind = UKI
		b.KernelVersion = b.UKIs[0].KernelVersion
		return b, nil
	}
	b.Addons = nil // without a UKI there is nothing to add them to
	for _, kver := range kvers {
		dir := modules.Get(kver).(*fstree.Dir)
		if !isRegular(dir.Get("vmlinuz")) {
			continue
		}
		kdir := ModulesDir + "/" + kver
		if !isRegular(dir.Get("initramfs.img")) {
			return nil, fmt.Errorf("%s/vmlinuz has no initramfs.img beside it; a bootc image ships both", kdir)
		}
		b.Kind, b.KernelVersion = BLS, kver
		b.Vmlinuz, b.Initramfs = kdir+"/vmlinuz", kdir+"/initramfs.img"
		return b, nil
	}
	return b, nil
}

// findUKIs collects the *.efi files below dir: in dir itself UKIs, in
// subdirectories addons, as composefs-rs's Type2Entry::load_all does.
func (b *Boot) findUKIs(dir *fstree.Dir, path, kver string, top bool, open ObjectOpener) error {
	for _, name := range dir.Names() {
		p := path + "/" + name
		switch in := dir.Get(name).(type) {
		case *fstree.Dir:
			if err := b.findUKIs(in, p, kver, false, open); err != nil {
				return err
			}
		case *fstree.Leaf:
			if !strings.HasSuffix(name, ".efi") {
				continue
			}
			if in.Kind != fstree.Regular {
				return fmt.Errorf("%s: a %s, not a regular file; bootc takes every *.efi there for a UKI", p, in.Kind)
			}
			if !top {
				b.Addons = append(b.Addons, p)
				continue
			}
			info, err := parseLeaf(in, open)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			b.UKIs = append(b.UKIs, UKIFile{Path: p, KernelVersion: kver, Leaf: in, Info: info})
		}
	}
	sort.Strings(b.Addons)
	return nil
}

// maxUKI bounds a UKI read into memory when its opener cannot seek.
const maxUKI = 1 << 30

func parseLeaf(l *fstree.Leaf, open ObjectOpener) (*UKIInfo, error) {
	if l.Object == nil {
		return ParseUKI(bytes.NewReader(l.Inline))
	}
	rc, err := open(l.Object)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	ra, err := readerAt(rc, maxUKI)
	if err != nil {
		return nil, err
	}
	return ParseUKI(ra)
}

func lookupDir(root *fstree.Dir, p string) (*fstree.Dir, error) {
	in, err := root.Lookup(p)
	if err != nil {
		// A missing path, or a component on the way that is no directory
		// (/boot a symlink), means there is nothing there to boot from.
		return nil, nil
	}
	d, ok := in.(*fstree.Dir)
	if !ok {
		return nil, nil
	}
	return d, nil
}

func isRegular(in fstree.Inode) bool {
	l, ok := in.(*fstree.Leaf)
	return ok && l.Kind == fstree.Regular
}

// readRegular returns the bytes of the regular file at p, nil when there
// is none.
func readRegular(root *fstree.Dir, p string, open ObjectOpener, limit int64) ([]byte, error) {
	in, err := root.Lookup(p)
	if err != nil || !isRegular(in) {
		return nil, nil
	}
	l := in.(*fstree.Leaf)
	if l.Object == nil {
		return l.Inline, nil
	}
	if l.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d this file may have", p, l.Size, limit)
	}
	rc, err := open(l.Object)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return data, nil
}
