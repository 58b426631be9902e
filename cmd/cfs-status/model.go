package main

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/cfs-project/cfs/lib/sysroot"
)

// The JSON model is bootc's spec.rs Host (camelCase, k8s-style), limited to
// the fields cfs can know from the disk: nothing about pending updates,
// soft-reboot or the /usr overlay, which only a running bootc can say.

type hostJSON struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   metadataJSON `json:"metadata"`
	Spec       specJSON     `json:"spec"`
	Status     statusJSON   `json:"status"`
	// Cfs is ours, outside bootc's schema: --verbose store details.
	Cfs *storesJSON `json:"cfs,omitempty"`
}

type metadataJSON struct {
	Name string `json:"name"`
}

type specJSON struct {
	Image     *imageRefJSON `json:"image"`
	BootOrder string        `json:"bootOrder"`
}

type imageRefJSON struct {
	Image     string `json:"image"`
	Transport string `json:"transport"`
	// Signature is bootc's ImageSignature: {"ostreeRemote":"<name>"},
	// "containerPolicy" or "insecure"; omitted when unverified.
	Signature any `json:"signature,omitempty"`
}

type statusJSON struct {
	Staged           *bootEntryJSON   `json:"staged"`
	Booted           *bootEntryJSON   `json:"booted"`
	Rollback         *bootEntryJSON   `json:"rollback"`
	OtherDeployments []*bootEntryJSON `json:"otherDeployments,omitempty"`
	RollbackQueued   bool             `json:"rollbackQueued"`
	Type             *string          `json:"type"`
	Storage          *storageJSON     `json:"storage,omitempty"`
}

type storageJSON struct {
	Unified              sysroot.Unified `json:"unified"`
	OstreeComposefsBound bool            `json:"ostreeComposefsBound"`
}

type bootEntryJSON struct {
	Image        *imageStatusJSON `json:"image"`
	DownloadOnly bool             `json:"downloadOnly"`
	Store        *string          `json:"store"`
	Ostree       *ostreeJSON      `json:"ostree"`
	Composefs    *composefsJSON   `json:"composefs"`
}

type imageStatusJSON struct {
	Image        imageRefJSON `json:"image"`
	Version      string       `json:"version,omitempty"`
	Timestamp    string       `json:"timestamp,omitempty"`
	ImageDigest  string       `json:"imageDigest"`
	Architecture string       `json:"architecture"`
}

type ostreeJSON struct {
	Stateroot    string `json:"stateroot"`
	Checksum     string `json:"checksum"`
	DeploySerial int    `json:"deploySerial"`
}

type composefsJSON struct {
	Verity               string `json:"verity"`
	BootType             string `json:"bootType"` // "Bls"/"Uki": capitalized in JSON, unlike the origin
	Bootloader           string `json:"bootloader"`
	BootDigest           string `json:"bootDigest,omitempty"`
	MissingVerityAllowed bool   `json:"missingVerityAllowed"`
}

// slot is one deployment with what the stores say about its image.
type slot struct {
	d    *sysroot.Deployment
	info *sysroot.ImageInfo // nil when unreadable
}

func imageRef(r *sysroot.ImageReference) *imageRefJSON {
	if r == nil {
		return nil
	}
	j := &imageRefJSON{Image: r.Image, Transport: r.Transport}
	switch r.Signature {
	case "ostreeRemote":
		j.Signature = map[string]string{"ostreeRemote": r.OstreeRemote}
	case "":
	default:
		j.Signature = r.Signature
	}
	return j
}

func entryJSON(h *sysroot.Host, s *slot) *bootEntryJSON {
	if s == nil {
		return nil
	}
	d := s.d
	e := &bootEntryJSON{}
	if ref := imageRef(d.Image); ref != nil {
		img := &imageStatusJSON{Image: *ref, ImageDigest: d.ManifestDigest}
		if s.info != nil {
			img.Architecture, img.Version = s.info.Architecture, s.info.Version
			if !s.info.Created.IsZero() {
				img.Timestamp = s.info.Created.Format(time.RFC3339)
			}
		}
		e.Image = img
	}
	if h.Kind == sysroot.KindOstree {
		store := "ostreeContainer"
		e.Store = &store
		e.Ostree = &ostreeJSON{Stateroot: d.Stateroot, Checksum: d.Commit, DeploySerial: d.DeploySerial}
		return e
	}
	bootType := "Bls"
	if d.BootType == "uki" {
		bootType = "Uki"
	}
	e.DownloadOnly = d.Staged && h.StagedFinalizationLocked
	e.Composefs = &composefsJSON{Verity: d.Verity, BootType: bootType, Bootloader: h.Bootloader,
		BootDigest: d.BootDigest, MissingVerityAllowed: d.VerityOptional}
	return e
}

func buildJSON(h *sysroot.Host, slots map[*sysroot.Deployment]*slot, stores *storesJSON) *hostJSON {
	get := func(d *sysroot.Deployment) *bootEntryJSON {
		if d == nil {
			return nil
		}
		return entryJSON(h, slots[d])
	}
	j := &hostJSON{APIVersion: "org.containers.bootc/v1", Kind: "BootcHost", Metadata: metadataJSON{Name: "host"}, Cfs: stores}
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
		j.Status.Storage = &storageJSON{Unified: h.Storage.Unified, OstreeComposefsBound: h.Storage.Bound(h.Kind)}
	}
	return j
}

// canonicalJSON is what bootc's to_canon_json_writer gives: compact, keys
// sorted, no HTML escaping. Round-tripping through a map sorts the keys.
func canonicalJSON(v any) ([]byte, error) {
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
