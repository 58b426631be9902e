package hoststatus

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// Package hoststatus is bootc's host status as JSON (bootc's spec.rs Host,
// for the fields cfs can read from the disk) and the scan of how much of
// the object stores shares disk extents. cfs-status prints them; cfs-fsck
// can share them.
//
// The JSON model is bootc's spec.rs Host (camelCase, k8s-style), limited to
// the fields cfs can know from the disk: nothing about pending updates,
// soft-reboot or the /usr overlay, which only a running bootc can say.

// Host is bootc's status document.
type Host struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
	Status     Status   `json:"status"`
	// Cfs is ours, outside bootc's schema: --verbose store details.
	Cfs *Stores `json:"cfs,omitempty"`
}

type Metadata struct {
	Name string `json:"name"`
}

type Spec struct {
	Image     *ImageRef `json:"image"`
	BootOrder string    `json:"bootOrder"`
}

type ImageRef struct {
	Image     string `json:"image"`
	Transport string `json:"transport"`
	// Signature is bootc's ImageSignature: {"ostreeRemote":"<name>"},
	// "containerPolicy" or "insecure"; omitted when unverified.
	Signature any `json:"signature,omitempty"`
}

type Status struct {
	Staged           *BootEntry   `json:"staged"`
	Booted           *BootEntry   `json:"booted"`
	Rollback         *BootEntry   `json:"rollback"`
	OtherDeployments []*BootEntry `json:"otherDeployments,omitempty"`
	RollbackQueued   bool         `json:"rollbackQueued"`
	Type             *string      `json:"type"`
	Storage          *Storage     `json:"storage,omitempty"`
}

type Storage struct {
	Unified              sysroot.Unified `json:"unified"`
	OstreeComposefsBound bool            `json:"ostreeComposefsBound"`
}

type BootEntry struct {
	Image        *ImageStatus `json:"image"`
	DownloadOnly bool         `json:"downloadOnly"`
	Store        *string      `json:"store"`
	Ostree       *Ostree      `json:"ostree"`
	Composefs    *Composefs   `json:"composefs"`
}

type ImageStatus struct {
	Image        ImageRef `json:"image"`
	Version      string   `json:"version,omitempty"`
	Timestamp    string   `json:"timestamp,omitempty"`
	ImageDigest  string   `json:"imageDigest"`
	Architecture string   `json:"architecture"`
}

type Ostree struct {
	Stateroot    string `json:"stateroot"`
	Checksum     string `json:"checksum"`
	DeploySerial int    `json:"deploySerial"`
}

type Composefs struct {
	Verity               string `json:"verity"`
	BootType             string `json:"bootType"` // "Bls"/"Uki": capitalized in JSON, unlike the origin
	Bootloader           string `json:"bootloader"`
	BootDigest           string `json:"bootDigest,omitempty"`
	MissingVerityAllowed bool   `json:"missingVerityAllowed"`
}

// ImageInfos reads what the stores say about each deployment's image
// (nil for a deployment without an image, or whose image is unreadable,
// with the reason among the warnings: the deployment is still real).
func ImageInfos(h *sysroot.Host) (map[*sysroot.Deployment]*sysroot.ImageInfo, []error) {
	infos := map[*sysroot.Deployment]*sysroot.ImageInfo{}
	var warnings []error
	for _, d := range append([]*sysroot.Deployment{h.Staged, h.Booted, h.Rollback}, h.Other...) {
		if d == nil || d.Image == nil {
			continue
		}
		info, err := h.ImageInfo(d)
		if err != nil {
			warnings = append(warnings, err)
			continue
		}
		infos[d] = info
	}
	return infos, warnings
}

func imageRef(r *bootcconv.ImageReference) *ImageRef {
	if r == nil {
		return nil
	}
	j := &ImageRef{Image: r.Image, Transport: r.Transport}
	switch r.Signature {
	case "ostreeRemote":
		j.Signature = map[string]string{"ostreeRemote": r.OstreeRemote}
	case "":
	default:
		j.Signature = r.Signature
	}
	return j
}

func entry(h *sysroot.Host, d *sysroot.Deployment, info *sysroot.ImageInfo) *BootEntry {
	e := &BootEntry{}
	if ref := imageRef(d.Image); ref != nil {
		img := &ImageStatus{Image: *ref, ImageDigest: d.ManifestDigest}
		if info != nil {
			img.Architecture, img.Version = info.Architecture, info.Version
			if !info.Created.IsZero() {
				img.Timestamp = info.Created.Format(time.RFC3339)
			}
		}
		e.Image = img
	}
	if h.Kind == sysroot.KindOstree {
		store := "ostreeContainer"
		e.Store = &store
		e.Ostree = &Ostree{Stateroot: d.Stateroot, Checksum: d.Commit, DeploySerial: d.DeploySerial}
		return e
	}
	bootType := "Bls"
	if d.BootType == "uki" {
		bootType = "Uki"
	}
	e.DownloadOnly = d.Staged && h.StagedFinalizationLocked
	e.Composefs = &Composefs{Verity: d.Verity, BootType: bootType, Bootloader: h.Bootloader,
		BootDigest: d.BootDigest, MissingVerityAllowed: d.VerityOptional}
	return e
}

// Build is bootc's status of host h, given its deployments' image
// information (ImageInfos) and, for --verbose, the store scan.
func Build(h *sysroot.Host, infos map[*sysroot.Deployment]*sysroot.ImageInfo, stores *Stores) *Host {
	get := func(d *sysroot.Deployment) *BootEntry {
		if d == nil {
			return nil
		}
		return entry(h, d, infos[d])
	}
	j := &Host{APIVersion: "org.containers.bootc/v1", Kind: "BootcHost", Metadata: Metadata{Name: "host"}, Cfs: stores}
	j.Status.Staged, j.Status.Booted, j.Status.Rollback = get(h.Staged), get(h.Booted), get(h.Rollback)
	for _, d := range h.Other {
		j.Status.OtherDeployments = append(j.Status.OtherDeployments, get(d))
	}
	j.Status.RollbackQueued = h.RollbackQueued
	j.Spec.BootOrder = "default"
	if h.RollbackQueued {
		j.Spec.BootOrder = "rollback"
	}
	// The spec is what the host will run: the staged image if any.
	if d := h.Staged; d != nil {
		j.Spec.Image = imageRef(d.Image)
	} else if d := h.Booted; d != nil {
		j.Spec.Image = imageRef(d.Image)
	}
	if j.Status.Booted != nil && j.Status.Booted.Image != nil {
		t := "bootcHost"
		j.Status.Type = &t
	}
	if h.Storage.Reported(h.Kind) {
		j.Status.Storage = &Storage{Unified: h.Storage.Unified, OstreeComposefsBound: h.Storage.Bound(h.Kind)}
	}
	return j
}

// CanonicalJSON is what bootc's to_canon_json_writer gives: compact, keys
// sorted, no HTML escaping. Round-tripping through a map sorts the keys.
func CanonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil {
		return nil, err
	}
	return out.Bytes(), nil // Encode's trailing newline ends the line on a terminal
}
