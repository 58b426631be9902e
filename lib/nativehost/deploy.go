package nativehost

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// Install writes the first deployment of a host: state/deploy/<id>/ (with
// the shared /var filled from the image), the boot artifacts, and last the
// entry that boots it, with kargs (root=…, rw, …; composefs=<id> is added)
// on a type #1 entry's options line.
func (h *Host) Install(img Image, kargs []string) (*Deployment, error) {
	p, err := h.prepare(img)
	if err != nil {
		return nil, err
	}
	dir, err := h.writeState(p, true)
	if err != nil {
		return nil, err
	}
	d := &Deployment{ID: p.id, Dir: dir, BootType: p.res.typ, BootDigest: p.digest, OS: p.os}
	// bootc passes over a name no addon has; the caller can say so.
	addons, missing := selectAddons(p.res.addons, h.UKIAddons)
	for _, a := range addons {
		d.Addons = append(d.Addons, a.Name)
	}
	d.MissingAddons = missing
	options := setCmdlineArg(strings.Join(kargs, " "), "composefs", p.id)
	switch {
	case p.res.typ == BootUKI && h.bootloader() == Grub:
		if err := h.writeUKI(p, addons); err != nil {
			return nil, err
		}
		cfg := filepath.Join(h.bootDir(), "grub2", "user.cfg")
		if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
			return nil, err
		}
		if h.ESPUUID != "" {
			if strings.ContainsAny(h.ESPUUID, "\"\n\\$") {
				return nil, fmt.Errorf("ESP UUID %q cannot go in grub2/efiuuid.cfg", h.ESPUUID)
			}
			uuid := filepath.Join(h.bootDir(), "grub2", "efiuuid.cfg")
			// bootc writes it without a final newline.
			if err := atomicfile.WriteFile("", uuid, []byte("set EFI_PART_UUID=\""+h.ESPUUID+"\""), 0o644); err != nil {
				return nil, err
			}
		}
		if err := atomicfile.WriteFile("", cfg, grubUserCfg([]string{grubMenuEntry(p.ukiLabel, p.id)}), 0o644); err != nil {
			return nil, err
		}
		d.Entry = cfg
		return d, nil
	case p.res.typ == BootUKI:
		if err := h.writeUKI(p, addons); err != nil {
			return nil, err
		}
		e := h.ukiEntry(p)
		d.Entry, err = h.writeEntry(filepath.Join(h.LoaderDir(), "entries"), entryFileName(p.os.ID, e.Version, true), e)
		if err != nil {
			return nil, err
		}
		return d, h.ensureLoaderConf()
	}
	e, err := h.writeTypeOne(p, options)
	if err != nil {
		return nil, err
	}
	d.Entry, err = h.writeEntry(filepath.Join(h.LoaderDir(), "entries"), entryFileName(p.os.ID, p.os.Version, true), e)
	return d, err
}

func (h *Host) writeEntry(dir, name string, e *entry) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, atomicfile.WriteFile("", p, e.text(), 0o644)
}

// liveEntry is one of bootc's entries as found in the bootloader config.
type liveEntry struct {
	file   string // entry file, or "" for a user.cfg menuentry
	id     string // the deployment it boots
	e      *entry // type #1 entries
	menu   string // user.cfg menuentry text
	label  string
	sorted *sysroot.BLSEntry
}

// entries reads the live (or staged) entries of bootc in boot order:
// first = default.
func (h *Host) entries(staged bool) ([]*liveEntry, error) {
	if h.usesUserCfg() {
		cfg := filepath.Join(h.bootDir(), "grub2", "user.cfg")
		if staged {
			cfg += ".staged"
		}
		return readUserCfg(cfg)
	}
	dir := filepath.Join(h.LoaderDir(), "entries")
	if staged {
		dir += ".staged"
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return nil, err
	}
	var parsed []*sysroot.BLSEntry
	for _, n := range names {
		be, err := sysroot.ParseBLSEntry(n)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, be)
	}
	sysroot.SortBLS(parsed)
	var out []*liveEntry
	for _, be := range parsed {
		id, ok, err := sysroot.EntryVerity(be)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // another OS's entry
		}
		out = append(out, &liveEntry{file: be.Path, id: id, e: entryOf(be), sorted: be})
	}
	return out, nil
}

// usesUserCfg: GRUB classic boots UKIs from grub2/user.cfg; bootc looks
// for that file to decide (list_bootloader_entries).
func (h *Host) usesUserCfg() bool {
	if h.bootloader() != Grub {
		return false
	}
	_, err := os.Lstat(filepath.Join(h.bootDir(), "grub2", "user.cfg"))
	return err == nil
}

// Stage writes a deployment of img to boot next, as bootc upgrade does:
// state/deploy/<id>/, the boot artifacts, loader/entries.staged/ (or
// grub2/user.cfg.staged) with the new entry first and the booted one
// demoted to second, and last the staged-deployment announcement under
// RunDir. booted is the id on the running kernel command line; the new
// entry's options are the booted entry's with composefs= replaced. The
// live entries are not touched: Finalize swaps the staged ones in.
func (h *Host) Stage(img Image, booted string) (*Deployment, error) {
	return h.stage(img, booted, false)
}

// StageDownloadOnly is Stage with the finalization locked, bootc's
// upgrade --download-only: the deployment is written and staged, but no
// finalize applies it until Unlock. The lock lives in RunDir, so a reboot
// forgets the staging (as bootc's does).
func (h *Host) StageDownloadOnly(img Image, booted string) (*Deployment, error) {
	if h.RunDir == "" {
		return nil, errors.New("a download-only staging is recorded in the running system's /run: give its run directory")
	}
	return h.stage(img, booted, true)
}

func (h *Host) stage(img Image, booted string, locked bool) (*Deployment, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	live, err := h.entries(false)
	if err != nil {
		return nil, err
	}
	var cur *liveEntry
	for _, le := range live {
		if le.id == booted {
			cur = le
			break
		}
	}
	if cur == nil {
		return nil, fmt.Errorf("no bootloader entry under %s boots the booted deployment %s", h.LoaderDir(), booted)
	}
	p, err := h.prepare(img)
	if err != nil {
		return nil, err
	}
	for _, le := range live {
		if le.id == p.id {
			return nil, fmt.Errorf("target image has the same fs-verity digest as the existing deployment %s", p.id)
		}
	}
	// A previous staging (finished or not) is replaced, as bootc's
	// validate_update does: staged entries first, so that nothing names
	// a state directory while it is removed.
	if err := h.discardStaged(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(h.Root, stateDeploy, p.id)); err != nil {
		return nil, err
	}
	dir, err := h.writeState(p, false)
	if err != nil {
		return nil, err
	}
	d := &Deployment{ID: p.id, Dir: dir, BootType: p.res.typ, BootDigest: p.digest, OS: p.os}
	if h.usesUserCfg() {
		if p.res.typ != BootUKI {
			return nil, fmt.Errorf("%s boots UKIs from grub2/user.cfg; image %s has a kernel and initramfs, not a UKI", h.bootDir(), p.id)
		}
		if err := h.writeUKI(p, nil); err != nil {
			return nil, err
		}
		// The second menuentry is user.cfg's first, as bootc writes it
		// (write_grub_uki_menuentry keeps entries[0]): the booted one,
		// unless a rollback is queued, which then stays the fallback.
		cfg := filepath.Join(h.bootDir(), "grub2", "user.cfg.staged")
		if err := atomicfile.WriteFile("", cfg, grubUserCfg([]string{grubMenuEntry(p.ukiLabel, p.id), live[0].menu}), 0o644); err != nil {
			return nil, err
		}
		d.Entry = cfg
	} else {
		var e *entry
		name := ""
		if p.res.typ == BootUKI {
			if err := h.writeUKI(p, nil); err != nil {
				return nil, err
			}
			e = h.ukiEntry(p)
			name = entryFileName(p.os.ID, e.Version, true)
			if err := h.ensureLoaderConf(); err != nil {
				return nil, err
			}
		} else {
			options := cur.e.Options
			if cur.e.Efi != "" {
				return nil, fmt.Errorf("the booted deployment %s boots a UKI; image %s has a kernel and initramfs, not a UKI", booted, p.id)
			}
			v, _ := cur.sorted.Option("composefs")
			arg := p.id
			if strings.HasPrefix(v, "?") {
				arg = "?" + p.id
			}
			options = setCmdlineArg(options, "composefs", arg)
			if options, err = h.kargsDiff(img.Repo, booted, p, options); err != nil {
				return nil, err
			}
			if e, err = h.writeTypeOne(p, options); err != nil {
				return nil, err
			}
			name = entryFileName(p.os.ID, p.os.Version, true)
		}
		files := map[string][]byte{name: e.text()}
		oldName, old := demote(cur, p.os.ID)
		if oldName == name {
			return nil, fmt.Errorf("the new and the booted entry would both be %s", name)
		}
		files[oldName] = old
		d.Entry = filepath.Join(h.LoaderDir(), "entries.staged", name)
		if err := h.writeEntriesDir("entries.staged", files); err != nil {
			return nil, err
		}
	}
	if h.RunDir != "" {
		if err := os.MkdirAll(filepath.Dir(h.StagedFile()), 0o755); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile("", h.StagedFile(), stagedJSON(p.id, locked), 0o644); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// demote rewrites an entry as the second one: file name
// bootc_<osID>-<its version>-0.conf, sort-key bootc-<osID>-1. bootc names
// the demoted booted entry after the new image's os ID at staging
// (setup_composefs_bls_boot, write_systemd_uki_config), and both entries
// after "bootc" at rollback (rollback_composefs_entries).
func demote(le *liveEntry, osID string) (string, []byte) {
	e := *le.e
	e.SortKey = sortKey(osID, false)
	return entryFileName(osID, e.Version, false), e.text()
}

// promote is demote's opposite, for rollback.
func promote(le *liveEntry, osID string) (string, []byte) {
	e := *le.e
	e.SortKey = sortKey(osID, true)
	return entryFileName(osID, e.Version, true), e.text()
}

// writeEntriesDir makes loader/<name>/ hold exactly files: written in a
// temporary directory, each file and the directory fsynced, renamed into
// place (replacing an old one), the loader directory fsynced.
func (h *Host) writeEntriesDir(name string, files map[string][]byte) error {
	loader := h.LoaderDir()
	if err := os.MkdirAll(loader, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(loader, "."+name+".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := writeSynced(filepath.Join(tmp, n), files[n]); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	final := filepath.Join(loader, name)
	if err := os.RemoveAll(final); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return atomicfile.SyncDir(loader)
}

func writeSynced(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return f.Close()
}

// discardStaged removes a staged deployment's entries and announcement
// (its state directory stays until GC: nothing names it any more).
func (h *Host) discardStaged() error {
	if h.RunDir != "" {
		if err := os.Remove(h.StagedFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, p := range []string{
		filepath.Join(h.LoaderDir(), "entries.staged"),
		filepath.Join(h.bootDir(), "grub2", "user.cfg.staged"),
	} {
		if _, err := os.Lstat(p); err == nil {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			if err := atomicfile.SyncDir(filepath.Dir(p)); err != nil {
				return err
			}
		}
	}
	return nil
}

// kargsDiff applies the kargs.d difference between the booted image and
// the new one to the command line.
func (h *Host) kargsDiff(repo *composefs.Repository, booted string, p *prepared, options string) (string, error) {
	newArgs, err := p.tree.kargsD()
	if err != nil {
		return "", err
	}
	id, err := hex.DecodeString(booted)
	if err != nil {
		return "", fmt.Errorf("booted deployment id %q is not hex", booted)
	}
	old, err := openImageTree(repo, id)
	if err != nil {
		return "", fmt.Errorf("the booted image's kargs.d: %w", err)
	}
	oldArgs, err := old.kargsD()
	if err != nil {
		return "", err
	}
	return upgradeKargs(options, oldArgs, newArgs), nil
}
