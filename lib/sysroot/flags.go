package sysroot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/ostree"
)

// Unified is the containers-storage participation bootc records in
// composefs/bootc.json and accepts in [install.storage] unified.
type Unified string

const (
	UnifiedDisabled        Unified = "disabled"
	UnifiedEnabled         Unified = "enabled"           // reflinks required
	UnifiedEnabledWithCopy Unified = "enabled-with-copy" // byte copy where reflinks are refused
)

// ParseUnified accepts exactly bootc's kebab-case spellings.
func ParseUnified(s string) (Unified, error) {
	switch u := Unified(s); u {
	case UnifiedDisabled, UnifiedEnabled, UnifiedEnabledWithCopy:
		return u, nil
	}
	return "", fmt.Errorf("invalid value %q (want disabled, enabled or enabled-with-copy)", s)
}

// Enabled is bootc's UnifiedStorage::is_enabled: both enabled variants.
func (u Unified) Enabled() bool { return u == UnifiedEnabled || u == UnifiedEnabledWithCopy }

// Paths of the two flags, relative to the physical root.
const (
	BootcJSONPath  = "composefs/bootc.json"
	OstreeRepoPath = "ostree/repo"
)

// bootcJSON is bootc's BootcRepoMeta. Field order is bootc's struct order,
// which serde keeps when it pretty-prints.
type bootcJSON struct {
	Version int     `json:"version"`
	Unified Unified `json:"unified"`
}

// MarshalBootcJSON gives the bytes bootc writes for mode: serde_json's
// pretty printer (two-space indent, no trailing newline).
func MarshalBootcJSON(mode Unified) ([]byte, error) {
	if _, err := ParseUnified(string(mode)); err != nil {
		return nil, err
	}
	return json.MarshalIndent(bootcJSON{Version: 1, Unified: mode}, "", "  ")
}

// ReadBootcJSON reads composefs/bootc.json under root. ok is false when the
// file is absent, which bootc reads as "disabled".
func ReadBootcJSON(root string) (mode Unified, ok bool, err error) {
	path := filepath.Join(root, BootcJSONPath)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return UnifiedDisabled, false, nil
	}
	if err != nil {
		return "", false, err
	}
	mode, err = parseBootcJSON(data)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	return mode, true, nil
}

func parseBootcJSON(data []byte) (Unified, error) {
	var raw struct {
		Version *int    `json:"version"`
		Unified *string `json:"unified"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return "", fmt.Errorf("malformed JSON: %v", err)
	}
	if dec.More() {
		return "", errors.New("malformed JSON: trailing data")
	}
	switch {
	case raw.Version == nil:
		return "", errors.New(`no "version"`)
	case *raw.Version != 1:
		return "", fmt.Errorf(`unsupported "version" %d (want 1)`, *raw.Version)
	case raw.Unified == nil:
		return "", errors.New(`no "unified"`)
	}
	mode, err := ParseUnified(*raw.Unified)
	if err != nil {
		return "", fmt.Errorf(`"unified": %w`, err)
	}
	return mode, nil
}

// WriteBootcJSON records mode in composefs/bootc.json, atomically and
// durably (bootc itself skips the fsyncs; we do not, because the flag is
// the commit point of a migration). It is the last step of `set-unified
// full`: call it only once everything the flag promises is on disk.
func WriteBootcJSON(root string, mode Unified) error {
	data, err := MarshalBootcJSON(mode)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile("", filepath.Join(root, BootcJSONPath), data, 0o644)
}

// ReadRepoFlag reports the ostree repo config key [composefs] unified=true
// ("ostree commits are synthesized from composefs"). ok is false when there
// is no ostree repo (composefs-native hosts), which reads as unset.
func ReadRepoFlag(root string) (set, ok bool, err error) {
	repoPath := filepath.Join(root, OstreeRepoPath)
	if _, err := os.Stat(filepath.Join(repoPath, "objects")); errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return false, false, err
	}
	defer repo.Close()
	set, err = repo.ComposefsUnified()
	if err != nil {
		return false, false, fmt.Errorf("%s: %w", filepath.Join(repoPath, "config"), err)
	}
	return set, true, nil
}

// SetRepoFlag sets [composefs] unified=true in the ostree repo config, as
// `ostree config set composefs.unified true` would; idempotent.
func SetRepoFlag(root string) error {
	repo, err := ostree.Open(filepath.Join(root, OstreeRepoPath))
	if err != nil {
		return err
	}
	defer repo.Close()
	if set, err := repo.ComposefsUnified(); err == nil && set {
		return nil
	}
	return repo.SetConfig("composefs", "unified", "true")
}
