package nativehost

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/composefs"
)

// Staged returns the staged deployment's id: on a running system (RunDir
// given) the announcement there, with its finalization lock (bootc's
// download-only), and nothing without one, as bootc reads it: entries
// staged before a reboot that did not finalize them are not applied by a
// later shutdown. A disk image (no RunDir) has only its entries: the
// first staged entry that is not the booted one. "" when nothing is
// staged.
func (h *Host) Staged(booted string) (id string, locked bool, err error) {
	if h.RunDir != "" {
		data, err := os.ReadFile(h.StagedFile())
		if errors.Is(err, os.ErrNotExist) {
			return "", false, nil
		} else if err != nil {
			return "", false, err
		}
		var s struct {
			DeplID             string `json:"depl_id"`
			FinalizationLocked bool   `json:"finalization_locked"`
		}
		if err := json.Unmarshal(data, &s); err != nil || len(s.DeplID) != 128 {
			return "", false, fmt.Errorf("%s: not {\"depl_id\":\"<128 hex>\",\"finalization_locked\":<bool>}", h.StagedFile())
		}
		return s.DeplID, s.FinalizationLocked, nil
	}
	staged, err := h.entries(true)
	if err != nil {
		return "", false, err
	}
	for _, e := range staged {
		if e.id != booted {
			return e.id, false, nil
		}
	}
	return "", false, nil
}

// Unlock lets a download-only staging be finalized (bootc upgrade
// --from-downloaded): the announcement is rewritten unlocked. It returns
// the staged id and whether it was locked; an error when nothing is
// staged.
func (h *Host) Unlock() (id string, wasLocked bool, err error) {
	if h.RunDir == "" {
		return "", false, errors.New("the finalization lock is in the running system's /run: give its run directory")
	}
	id, locked, err := h.Staged("")
	if err != nil {
		return "", false, err
	}
	if id == "" {
		return "", false, errors.New("no staged deployment found")
	}
	if !locked {
		return id, false, nil
	}
	return id, true, atomicfile.WriteFile("", h.StagedFile(), stagedJSON(id, false), 0o644)
}

// Finalize applies a staged deployment, as bootc-finalize-staged.service
// does at shutdown: the changes made to the running /etc (etcDir) since
// the booted image's pristine /etc are merged into the staged
// deployment's etc, then the staged entries are exchanged with the live
// ones in one renameat2(RENAME_EXCHANGE) and the old ones removed. It
// returns the finalized id; "" (no error) when nothing is staged or the
// staged deployment is locked (download-only).
func (h *Host) Finalize(booted, etcDir string) (string, error) {
	if err := h.check(); err != nil {
		return "", err
	}
	id, locked, err := h.Staged(booted)
	if err != nil || id == "" || locked {
		return "", err
	}
	stagedPath := filepath.Join(h.LoaderDir(), "entries.staged")
	if h.usesUserCfg() {
		stagedPath = filepath.Join(h.bootDir(), "grub2", "user.cfg.staged")
	}
	if _, err := os.Lstat(stagedPath); err != nil {
		// Finalized already (bootc's service and ours both stopping at
		// shutdown): the announcement stays in /run until the reboot.
		if live, lerr := h.entries(false); lerr == nil && len(live) > 0 && live[0].id == id {
			return "", nil
		}
		return "", fmt.Errorf("deployment %s is announced as staged but %s is missing: %w", id, stagedPath, err)
	}
	newEtc := filepath.Join(h.Root, stateDeploy, id, "etc")
	if fi, err := os.Stat(newEtc); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("staged deployment %s has no etc directory (%s)", id, newEtc)
	}
	repo, err := composefs.Open(filepath.Join(h.Root, "composefs"))
	if err != nil {
		return "", err
	}
	defer repo.Close()
	bootedID, err := hex.DecodeString(booted)
	if err != nil || len(bootedID) != 64 {
		return "", fmt.Errorf("booted deployment id %q is not 128 hex digits", booted)
	}
	pristine, err := openImageTree(repo, bootedID)
	if err != nil {
		return "", fmt.Errorf("the booted image's pristine /etc: %w", err)
	}
	petc, err := pristine.lookupNoFollow("/etc")
	if err != nil {
		return "", err
	}
	if err := mergeEtc(pristine, petc, etcDir, newEtc); err != nil {
		return "", err
	}
	if err := os.Remove(filepath.Join(newEtc, ".updated")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := syncfs(newEtc); err != nil {
		return "", err
	}
	if err := h.swapStaged(); err != nil {
		return "", err
	}
	if h.RunDir != "" {
		if err := os.Remove(h.StagedFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return id, nil
}

// swapStaged exchanges entries.staged with entries (or user.cfg.staged
// with user.cfg) atomically and removes what was live.
func (h *Host) swapStaged() error {
	var dir, live, staged string
	if h.usesUserCfg() {
		dir, live, staged = filepath.Join(h.bootDir(), "grub2"), "user.cfg", "user.cfg.staged"
	} else {
		dir, live, staged = h.LoaderDir(), "entries", "entries.staged"
		if err := os.MkdirAll(filepath.Join(dir, live), 0o755); err != nil {
			return err
		}
	}
	if err := renameat2(unix.AT_FDCWD, filepath.Join(dir, staged), unix.AT_FDCWD, filepath.Join(dir, live), unix.RENAME_EXCHANGE); err != nil {
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("exchanging %s and %s in %s: %w", staged, live, dir, err)
		}
		// FAT (an ESP) has no RENAME_EXCHANGE.
		if err := exchangeByRenames(dir, live, staged); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(dir, staged)); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// rollbackOSID is the os ID bootc's rollback writes the entries under.
const rollbackOSID = "bootc"

// renameat2 is unix.Renameat2; a test takes RENAME_EXCHANGE away, as FAT
// does not have it.
var renameat2 = unix.Renameat2

func exchangeByRenames(dir, live, staged string) error {
	livePath, stagedPath := filepath.Join(dir, live), filepath.Join(dir, staged)
	fi, err := os.Lstat(stagedPath)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		// user.cfg: replacing a file by rename is atomic already.
		return os.Rename(stagedPath, livePath)
	}
	// Entries one by one: the new ones in (each rename atomic), then the
	// old ones out. At every point each entry present boots a complete
	// deployment; only their order is briefly mixed.
	ents, err := os.ReadDir(stagedPath)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, e := range ents {
		keep[e.Name()] = true
		if err := os.Rename(filepath.Join(stagedPath, e.Name()), filepath.Join(livePath, e.Name())); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(livePath); err != nil {
		return err
	}
	old, err := os.ReadDir(livePath)
	if err != nil {
		return err
	}
	for _, e := range old {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(livePath, e.Name())); err != nil {
				return err
			}
		}
	}
	return atomicfile.SyncDir(livePath)
}

// Rollback makes the rollback deployment boot next, as bootc rollback
// does: the two bootc entries swap order (written to the staged location
// and exchanged in), and a staged deployment is discarded. It returns the
// id that now boots first.
func (h *Host) Rollback() (string, error) {
	if err := h.check(); err != nil {
		return "", err
	}
	if err := h.discardStaged(); err != nil {
		return "", err
	}
	live, err := h.entries(false)
	if err != nil {
		return "", err
	}
	if len(live) < 2 {
		return "", fmt.Errorf("no rollback deployment: %d bootc entries under %s", len(live), h.LoaderDir())
	}
	first, second := live[0], live[1]
	if h.usesUserCfg() {
		cfg := filepath.Join(h.bootDir(), "grub2", "user.cfg.staged")
		menus := []string{second.menu, first.menu}
		for _, e := range live[2:] {
			menus = append(menus, e.menu)
		}
		if err := atomicfile.WriteFile("", cfg, grubUserCfg(menus), 0o644); err != nil {
			return "", err
		}
	} else {
		// bootc's rollback names both entries after os ID "bootc",
		// whatever the images' os-release says.
		n1, t1 := promote(second, rollbackOSID)
		n0, t0 := demote(first, rollbackOSID)
		if n0 == n1 {
			return "", fmt.Errorf("the two entries would both be %s", n0)
		}
		files := map[string][]byte{n1: t1, n0: t0}
		if err := h.writeEntriesDir("entries.staged", files); err != nil {
			return "", err
		}
	}
	return second.id, h.swapStaged()
}

// Prune removes what no bootloader entry (live or staged) and no staged
// announcement names any more, as bootc's composefs GC does for a native
// host: state/deploy/<id>/ directories, bootc_composefs-* kernel
// directories, and UKIs on the ESP with their addon directories. keep (the booted deployment) is never
// removed. Images in the repository are left to cfs-gc, which sees them
// unpinned once their state directory is gone. It returns what it removed.
func (h *Host) Prune(keep string) ([]string, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	ids := map[string]bool{keep: true}
	bootDirs := map[string]bool{}
	for _, staged := range []bool{false, true} {
		es, err := h.entries(staged)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			ids[e.id] = true
			if e.e != nil && e.e.Linux != "" {
				bootDirs[filepath.Base(filepath.Dir(e.e.Linux))] = true
			}
		}
	}
	if id, _, err := h.Staged(keep); err != nil {
		return nil, err
	} else if id != "" {
		ids[id] = true
	}
	var removed []string
	remove := func(p string) error {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		removed = append(removed, p)
		return nil
	}
	deploy := filepath.Join(h.Root, stateDeploy)
	ents, err := os.ReadDir(deploy)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if !ids[e.Name()] {
			if err := remove(filepath.Join(deploy, e.Name())); err != nil {
				return removed, err
			}
		}
	}
	// Leftovers of a staging that was killed.
	tmps, _ := filepath.Glob(filepath.Join(h.Root, "state", ".tmp-deploy-*"))
	for _, p := range tmps {
		if err := remove(p); err != nil {
			return removed, err
		}
	}
	kernelDirs := []string{h.bootDir()}
	if h.ESP != "" {
		kernelDirs = append(kernelDirs, filepath.Join(h.ESP, "EFI", "Linux"))
	}
	for _, dir := range kernelDirs {
		names, _ := filepath.Glob(filepath.Join(dir, typeOneDirPrefix+"*"))
		more, _ := filepath.Glob(filepath.Join(dir, ".tmp-"+typeOneDirPrefix+"*"))
		for _, p := range append(names, more...) {
			if fi, err := os.Lstat(p); err != nil || !fi.IsDir() || bootDirs[filepath.Base(p)] {
				continue
			}
			if err := remove(p); err != nil {
				return removed, err
			}
		}
	}
	if h.ESP != "" {
		ukis, _ := filepath.Glob(filepath.Join(h.ESP, ukiDir, "*"))
		for _, p := range ukis {
			name := filepath.Base(p)
			// The UKI and its addon directory go together.
			base := strings.TrimSuffix(strings.TrimPrefix(name, ".tmp-"), addonDirSuffix)
			id, ok := strings.CutSuffix(base, ".efi")
			if !ok {
				continue
			}
			id, ok = strings.CutPrefix(id, typeOneDirPrefix)
			if !ok || (ids[id] && !strings.HasPrefix(name, ".tmp-")) {
				continue
			}
			if err := remove(p); err != nil {
				return removed, err
			}
		}
	}
	for _, d := range append(kernelDirs, deploy, filepath.Join(h.Root, "state")) {
		if _, err := os.Stat(d); err == nil {
			if err := atomicfile.SyncDir(d); err != nil {
				return removed, err
			}
		}
	}
	return removed, nil
}
