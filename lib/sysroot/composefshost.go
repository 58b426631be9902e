package sysroot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
)

// verityHexLen: composefs-native hosts are hard-coded to SHA-512 verity.
const verityHexLen = 128

// loadComposefs reads a composefs-native host. The bootloader entries are
// the source of truth, as for bootc: each names an EROFS image by verity,
// and state/deploy/<verity>/<verity>.origin says where it came from.
func loadComposefs(h *Host, cmd Cmdline, opts Options) error {
	live, staged, loader, err := composefsEntries(h.Root, opts.ESP)
	if err != nil {
		return err
	}
	h.Bootloader = loader
	byVerity := map[string]*Deployment{}
	var ordered []*Deployment
	for _, e := range live {
		if !isBootcEntry(e) {
			continue // another OS's entry (dual boot): not ours to judge
		}
		d, err := composefsDeploymentForEntry(h.Root, e)
		if err != nil {
			return err
		}
		if byVerity[d.Verity] != nil {
			continue // one image, two entries (e.g. BLS and a UKI addon): one deployment
		}
		byVerity[d.Verity] = d
		ordered = append(ordered, d)
	}
	if cmd.Composefs != "" {
		if d := byVerity[cmd.Composefs]; d != nil {
			h.Booted = d
			d.VerityOptional = cmd.VerityOptional
		}
	}

	// The deployment the staged entries add (they hold it plus the
	// booted one, demoted).
	inStaged := ""
	for _, e := range staged {
		if !isBootcEntry(e) {
			continue
		}
		v, err := entryVerity(e)
		if err != nil {
			return err
		}
		if h.Booted == nil || v != h.Booted.Verity {
			inStaged = v
			break
		}
	}
	stagedID := ""
	if opts.RunDir != "" {
		// A running system: as bootc's status, only what /run announces
		// is staged, and only if an entry (live or staged) names it.
		// Staged entries without the announcement are left from before
		// a reboot without finalize: no finalize applies them and the
		// next staging replaces them, so they are not shown (GC keeps
		// their state directory's image all the same).
		path := filepath.Join(opts.RunDir, "composefs", "staged-deployment")
		id, locked, ok, err := readStagedDeployment(path)
		if err != nil {
			return err
		}
		if ok && (h.Booted == nil || id != h.Booted.Verity) && (byVerity[id] != nil || id == inStaged) {
			stagedID, h.StagedFinalizationLocked = id, locked
		}
	} else {
		// No /run to look at (a disk image): the staged entries say it.
		stagedID = inStaged
	}
	if stagedID != "" {
		d := byVerity[stagedID]
		if d == nil {
			if d, err = readComposefsDeployment(h.Root, stagedID); err != nil {
				return err
			}
		}
		d.Staged = true
		h.Staged = d
	}
	h.assignSlots(ordered)
	return nil
}

// composefsEntries finds the entries as bootc's list_bootloader_entries
// does: systemd-boot's on the ESP; else GRUB classic with UKIs in
// boot/grub2/user.cfg; else GRUB with BLS entries in boot/loader/entries.
// The staged variants (entries.staged, user.cfg.staged) come back apart.
func composefsEntries(root, esp string) (live, staged []*BLSEntry, loader string, err error) {
	if esp != "" && isDir(filepath.Join(esp, "loader", "entries")) {
		live, staged, err = blsPair(filepath.Join(esp, "loader"))
		return live, staged, "systemd", err
	}
	userCfg := filepath.Join(root, "boot", "grub2", "user.cfg")
	if exists(userCfg) {
		if live, err = ParseGrubUserCfg(userCfg); err != nil {
			return nil, nil, "", err
		}
		if exists(userCfg + ".staged") {
			if staged, err = ParseGrubUserCfg(userCfg + ".staged"); err != nil {
				return nil, nil, "", err
			}
			for _, e := range staged {
				e.Staged = true
			}
		}
		return live, staged, "grub", nil
	}
	live, staged, err = blsPair(filepath.Join(root, "boot", "loader"))
	return live, staged, "grub", err
}

func blsPair(loaderDir string) (live, staged []*BLSEntry, err error) {
	if live, err = readBLSDir(filepath.Join(loaderDir, "entries"), "", false); err != nil {
		return nil, nil, err
	}
	staged, err = readBLSDir(filepath.Join(loaderDir, "entries.staged"), "", true)
	return live, staged, err
}

// isBootcEntry: bootc's entries carry composefs= or boot a bootc UKI.
// Every menuentry of user.cfg is bootc's (it rewrites the whole file), so
// a foreign one there is an error, not something to skip.
func isBootcEntry(e *BLSEntry) bool {
	if _, ok := e.Option("composefs"); ok || e.menuentry {
		return true
	}
	return strings.HasPrefix(filepath.Base(e.Efi), "bootc_composefs-")
}

// entryVerity is the deployment an entry boots: composefs=<verity> for
// type #1 entries, the UKI's file name bootc_composefs-<verity>.efi else.
func entryVerity(e *BLSEntry) (string, error) {
	v, ok := e.Option("composefs")
	if ok {
		v = strings.TrimPrefix(v, "?")
	} else if e.Efi != "" {
		name := filepath.Base(e.Efi)
		var okP, okS bool
		name, okP = strings.CutPrefix(name, "bootc_composefs-")
		v, okS = strings.CutSuffix(name, ".efi")
		if !okP || !okS {
			return "", fmt.Errorf("%s: entry %q: UKI %q is not bootc_composefs-<verity>.efi", e.Path, e.Title, e.Efi)
		}
	} else {
		return "", fmt.Errorf("%s: no composefs= in options", e.Path)
	}
	if !isHex(v, verityHexLen) {
		return "", fmt.Errorf("%s: composefs verity %q is not %d hex digits", e.Path, v, verityHexLen)
	}
	return v, nil
}

func composefsDeploymentForEntry(root string, e *BLSEntry) (*Deployment, error) {
	v, err := entryVerity(e)
	if err != nil {
		return nil, err
	}
	d, err := readComposefsDeployment(root, v)
	if err != nil {
		return nil, err
	}
	d.Entry = e
	return d, nil
}

// readComposefsDeployment reads state/deploy/<verity>/. A missing state
// dir is not an error here (bootc's GC calls it an orphan entry); the
// deployment is returned without an origin.
func readComposefsDeployment(root, verity string) (*Deployment, error) {
	dir := filepath.Join(root, "state", "deploy", verity)
	d := &Deployment{Dir: dir, Verity: verity}
	if !isDir(dir) {
		return d, nil
	}
	origin, err := ReadOrigin(filepath.Join(dir, verity+".origin"))
	if err != nil {
		return nil, err
	}
	d.Origin = origin
	d.BootType, d.BootDigest, d.ManifestDigest = origin.BootType, origin.BootDigest, origin.ManifestDigest
	if origin.ImageReference != "" {
		ref, _ := bootcconv.ParseImageReference(origin.ImageReference)
		d.Image = &ref
	}
	return d, nil
}

// readStagedDeployment reads bootc's /run/composefs/staged-deployment,
// {"depl_id":"<verity>","finalization_locked":<bool>}.
func readStagedDeployment(path string) (id string, locked, ok bool, err error) {
	data, err := readBounded(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, false, nil
	}
	if err != nil {
		return "", false, false, err
	}
	var raw struct {
		DeplID             *string `json:"depl_id"`
		FinalizationLocked bool    `json:"finalization_locked"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return "", false, false, fmt.Errorf("%s: malformed JSON: %v", path, err)
	}
	if raw.DeplID == nil || !isHex(*raw.DeplID, verityHexLen) {
		return "", false, false, fmt.Errorf("%s: depl_id is not a %d-hex-digit verity", path, verityHexLen)
	}
	return *raw.DeplID, raw.FinalizationLocked, true, nil
}

// EntryVerity returns the deployment a bootc entry boots; ok is false for
// another OS's entry.
func EntryVerity(e *BLSEntry) (verity string, ok bool, err error) {
	if !isBootcEntry(e) {
		return "", false, nil
	}
	v, err := entryVerity(e)
	return v, err == nil, err
}
