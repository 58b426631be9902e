package nativehost

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/bootimage"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// ukiDir is where bootc puts UKIs on the ESP.
const ukiDir = "EFI/Linux/bootc"

func ukiName(id string) string { return typeOneDirPrefix + id + ".efi" }

// readerAt opens an image file for random access (PE parsing).
func (t *imageTree) readerAt(n *erofs.Node) (io.ReaderAt, func(), error) {
	in := n.Inode()
	if in.Digest == nil {
		return bytes.NewReader(in.Content), func() {}, nil
	}
	f, err := t.repo.OpenObject(in.Digest)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %s: %w", t.id, n.Path(), err)
	}
	return f, func() { f.Close() }, nil
}

// prepareUKI checks that the UKI is sealed for this image, as bootc's
// write_pe_to_esp does (the composefs= of its .cmdline must be the boot
// image's id), and takes its label, version and boot digest
// (lib/bootimage: sha256 of .linux ‖ .initrd).
func (h *Host) prepareUKI(p *prepared) error {
	path := p.res.uki.Path()
	if h.ESP == "" {
		return fmt.Errorf("image %s boots a UKI (%s), which goes on the ESP: give the ESP", p.id, path)
	}
	r, done, err := p.src.readerAt(p.res.uki)
	if err != nil {
		return err
	}
	defer done()
	info, err := bootimage.ParseUKIDigest(r)
	if err != nil {
		return fmt.Errorf("image %s: UKI %s: %w", p.id, path, err)
	}
	if !info.Sealed() {
		return fmt.Errorf("image %s: UKI %s carries no composefs= on its .cmdline: it is not sealed for a boot image", p.id, path)
	}
	if info.ComposefsID != p.id {
		return &bootimage.MismatchError{Path: path, Sealed: info.ComposefsID, Boot: p.id}
	}
	// bootc labels the entry with composefs-rs's get_boot_label, which
	// fails without a .osrel or a name in it: refuse as bootc does,
	// rather than title the entry with the id.
	if info.OSRel == nil {
		return fmt.Errorf("image %s: UKI %s has no .osrel section, so no name for its entry (bootc refuses it too)", p.id, path)
	}
	if info.OSRel.PrettyName() == "" {
		return fmt.Errorf("image %s: UKI %s: its .osrel has no PRETTY_NAME, NAME or ID to name its entry (bootc refuses it too)", p.id, path)
	}
	p.os = osReleaseFrom(info.OSRel, p.id)
	p.ukiLabel = p.os.Title
	if v := p.os.Version; v != p.id {
		p.ukiLabel += " " + v
	}
	p.digest = info.BootDigest
	return nil
}

// writeUKI puts the UKI on the ESP as EFI/Linux/bootc/bootc_composefs-<id>.efi
// and the addons given in bootc_composefs-<id>.efi.extra.d/ beside it,
// where systemd-boot loads them, as bootc names them. Each is complete
// and synced under a temporary name first, the addons before the UKI: a
// UKI on the ESP has its addons.
func (h *Host) writeUKI(p *prepared, addons []*erofs.Node) error {
	dir := filepath.Join(h.ESP, ukiDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	addonDir := filepath.Join(dir, ukiName(p.id)+addonDirSuffix)
	// Leftovers under the final names (a staging of the same id that was
	// discarded) are replaced; no live entry names this id.
	if err := os.RemoveAll(addonDir); err != nil {
		return err
	}
	if len(addons) > 0 {
		tmp := filepath.Join(dir, ".tmp-"+ukiName(p.id)+addonDirSuffix)
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return err
		}
		for _, a := range addons {
			if err := p.src.writeFileSynced(a, filepath.Join(tmp, a.Name)); err != nil {
				os.RemoveAll(tmp)
				return err
			}
		}
		if err := atomicfile.SyncDir(tmp); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		if err := os.Rename(tmp, addonDir); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	final := filepath.Join(dir, ukiName(p.id))
	tmp := filepath.Join(dir, ".tmp-"+ukiName(p.id))
	os.Remove(tmp)
	if err := p.src.writeFileSynced(p.res.uki, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(dir)
}

// ukiEntry is systemd-boot's entry for a UKI, with the key ukiKey picks.
func (h *Host) ukiEntry(p *prepared) *entry {
	return &entry{
		Title:   p.ukiLabel,
		Version: p.os.Version,
		Efi:     "/" + ukiDir + "/" + ukiName(p.id),
		EfiKey:  h.ukiKey(),
		SortKey: sortKey(p.os.ID, true),
	}
}

// Keys of a systemd-boot entry that boots a UKI.
const (
	KeyEfi = "efi" // every systemd-boot version
	KeyUKI = "uki" // systemd 258 and later
)

// ukiMinSystemd is the first systemd whose boot loader reads "uki".
const ukiMinSystemd = 258

// bootctl is the command asked for systemd's version.
var bootctl = "bootctl"

// ukiKey is h.UKIKey, else bootc's choice (EFIKey::for_bootloader): "uki"
// when the bootctl of the machine writing the entry is systemd 258 or
// later, "efi" when it is older, missing or says something unexpected.
func (h *Host) ukiKey() string {
	if h.UKIKey != "" {
		return h.UKIKey
	}
	if v, err := SystemdVersion(); err == nil && v >= ukiMinSystemd {
		return KeyUKI
	}
	return KeyEfi
}

// SystemdVersion is the major version bootctl --version reports (its
// first line is "systemd 258 (258.1-1)"), as bootc reads it.
func SystemdVersion() (int, error) {
	out, err := exec.Command(bootctl, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", bootctl, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return 0, fmt.Errorf("%s --version: no version in %q", bootctl, out)
	}
	v, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s --version: no version in %q", bootctl, out)
	}
	return int(v), nil
}

// ensureLoaderConf writes systemd-boot's loader.conf as bootc does (its
// bytes: "timeout 5", no final newline), at install and at staging, when
// there is none.
func (h *Host) ensureLoaderConf() error {
	p := filepath.Join(h.ESP, "loader", "loader.conf")
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	return atomicfile.WriteFile("", p, []byte("timeout 5"), 0o644)
}

// grubMenuEntry is bootc's menuentry for a UKI chainloaded by GRUB
// (grub_menuconfig.rs).
func grubMenuEntry(label, id string) string {
	return fmt.Sprintf("menuentry \"%s: (%s)\" {\ninsmod fat\ninsmod chain\nsearch --no-floppy --set=root --fs-uuid \"${EFI_PART_UUID}\"\nchainloader /%s/%s\n}\n",
		label, id, ukiDir, ukiName(id))
}

// grubUserCfg is user.cfg: the ESP's UUID sourced from efiuuid.cfg, then
// the menuentries in boot order.
func grubUserCfg(menus []string) []byte {
	s := "\nif [ -f ${config_directory}/efiuuid.cfg ]; then\n        source ${config_directory}/efiuuid.cfg\nfi\n"
	return []byte(s + strings.Join(menus, ""))
}

// readUserCfg reads bootc's menuentries back, in file (boot) order.
func readUserCfg(path string) ([]*liveEntry, error) {
	if _, err := os.Lstat(path); os.IsNotExist(err) {
		return nil, nil
	}
	es, err := sysroot.ParseGrubUserCfg(path)
	if err != nil {
		return nil, err
	}
	var out []*liveEntry
	for _, e := range es {
		id, ok, err := sysroot.EntryVerity(e)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		label := strings.TrimSuffix(e.Title, ": ("+id+")")
		out = append(out, &liveEntry{id: id, label: label, menu: grubMenuEntry(label, id), sorted: e})
	}
	return out, nil
}
