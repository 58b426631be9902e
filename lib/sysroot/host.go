package sysroot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/bootcconv"
)

// Kind is the kind of bootc host.
type Kind string

const (
	KindOstree    Kind = "ostree"    // deployments are ostree checkouts
	KindComposefs Kind = "composefs" // composefs-native: deployments are EROFS images
)

// DetectKind tells the host kind from the physical root. An ostree repo
// decides it: ostree hosts may have composefs/ too (the unified pipeline
// creates it), but composefs-native hosts have no ostree/repo, only the
// ostree/bootc compatibility symlink.
func DetectKind(root string) (Kind, error) {
	if fi, err := os.Stat(root); err != nil {
		return "", err
	} else if !fi.IsDir() {
		return "", fmt.Errorf("%s: not a directory", root)
	}
	if isDir(filepath.Join(root, OstreeRepoPath, "objects")) {
		return KindOstree, nil
	}
	if isDir(filepath.Join(root, "state", "deploy")) || isDir(filepath.Join(root, "composefs")) {
		return KindComposefs, nil
	}
	return "", fmt.Errorf("%s: not a bootc physical root (no ostree/repo, no composefs/ or state/deploy/)", root)
}

// Deployment is one bootable deployment and where its image came from.
type Deployment struct {
	Dir    string  // the deployment directory
	Origin *Origin // nil only for a composefs entry whose state dir is gone
	Image  *bootcconv.ImageReference
	// ManifestDigest is recorded for composefs deployments in the origin;
	// for ostree ones the caller reads it from the commit (ostree.manifest-digest).
	ManifestDigest string

	// ostree hosts
	Stateroot    string
	Commit       string
	DeploySerial int

	// composefs-native hosts
	Verity         string
	BootType       string // "bls" or "uki" (origin's spelling)
	BootDigest     string
	VerityOptional bool // booted with composefs=?<verity>

	Entry  *BLSEntry // bootloader entry; nil for an ostree staged deployment
	Staged bool
}

// Host is the status of a physical root.
type Host struct {
	Root     string
	Kind     Kind
	Storage  Storage
	Booted   *Deployment
	Staged   *Deployment
	Rollback *Deployment
	Other    []*Deployment
	// RollbackQueued: the bootloader will boot the rollback next.
	RollbackQueued bool
	// Bootloader is bootc's name for it on composefs hosts ("grub" or
	// "systemd"); empty on ostree hosts.
	Bootloader string
	// StagedFinalizationLocked: the staged composefs deployment was
	// downloaded only (bootc upgrade --download-only).
	StagedFinalizationLocked bool
}

// Options say where the transient facts of the running system are, so that
// a mounted disk image or a test fixture can be inspected.
type Options struct {
	Cmdline string // kernel command line; "" means nothing is booted from this root
	RunDir  string // the running system's /run; "" for none
	ESP     string // mounted EFI system partition for systemd-boot entries; "" for none
}

// Load reads the host at root.
func Load(root string, opts Options) (*Host, error) {
	kind, err := DetectKind(root)
	if err != nil {
		return nil, err
	}
	h := &Host{Root: root, Kind: kind}
	if h.Storage, err = ReadStorage(root); err != nil {
		return nil, err
	}
	cmd := ParseCmdline(opts.Cmdline)
	if kind == KindOstree {
		err = loadOstree(h, cmd, opts)
	} else {
		err = loadComposefs(h, cmd, opts)
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

// assignSlots applies bootc's rule to bootloader-ordered deployments:
// rollback is the first that is neither booted nor staged; it is queued
// when it sorts before the booted one.
func (h *Host) assignSlots(ordered []*Deployment) {
	bootedAt := -1
	for i, d := range ordered {
		if d == h.Booted {
			bootedAt = i
		}
	}
	for i, d := range ordered {
		switch {
		case d == h.Booted || d == h.Staged:
		case h.Rollback == nil && h.Booted != nil:
			h.Rollback = d
			h.RollbackQueued = h.Staged == nil && i < bootedAt
		default:
			h.Other = append(h.Other, d)
		}
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, os.ErrNotExist)
}
