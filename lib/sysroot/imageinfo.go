package sysroot

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/ostree"
)

// ImageInfo is what bootc's ImageStatus says about a deployment's image
// beyond its reference; it lives in the stores, not next to the deployment.
type ImageInfo struct {
	ManifestDigest string
	Architecture   string
	Version        string    // label org.opencontainers.image.version (or version)
	Created        time.Time // config "created"; zero if absent
	Synthesized    bool      // ostree commit made from composefs (ostree-ext.composefs-synthesized)
}

// ImageInfo reads d's image metadata: for ostree deployments from the
// commit's ostree.manifest-digest and ostree.container.image-config, for
// composefs ones from the manifest and config the origin's
// manifest_digest names in the composefs repository. It also fills in
// d.ManifestDigest where the commit records one.
func (h *Host) ImageInfo(d *Deployment) (*ImageInfo, error) {
	if h.Kind == KindOstree {
		return ostreeImageInfo(h.Root, d)
	}
	info := &ImageInfo{ManifestDigest: d.ManifestDigest}
	if d.ManifestDigest == "" {
		return info, nil
	}
	repo, err := composefs.Open(filepath.Join(h.Root, "composefs"))
	if err != nil {
		return info, err
	}
	defer repo.Close()
	img, err := oci.OpenImage(repo, d.ManifestDigest)
	if err != nil {
		return info, fmt.Errorf("%s: image %s: %w", repo.Path(), d.ManifestDigest, err)
	}
	return info, parseConfigInto(info, img.Config)
}

func ostreeImageInfo(root string, d *Deployment) (*ImageInfo, error) {
	info := &ImageInfo{}
	repo, err := ostree.Open(filepath.Join(root, OstreeRepoPath))
	if err != nil {
		return info, err
	}
	defer repo.Close()
	c, err := repo.ReadCommit(d.Commit)
	if err != nil {
		return info, fmt.Errorf("deployment %s: commit: %w", d.Dir, err)
	}
	if v, ok := c.Lookup("ostree.manifest-digest"); ok {
		if s, ok := v.Value.(string); ok {
			info.ManifestDigest, d.ManifestDigest = s, s
		}
	}
	if v, ok := c.Lookup("ostree-ext.composefs-synthesized"); ok {
		info.Synthesized, _ = v.Value.(bool)
	}
	if v, ok := c.Lookup("ostree.container.image-config"); ok {
		if s, ok := v.Value.(string); ok {
			if err := parseConfigInto(info, []byte(s)); err != nil {
				return info, fmt.Errorf("deployment %s: commit %s: %w", d.Dir, d.Commit, err)
			}
		}
	}
	return info, nil
}

func parseConfigInto(info *ImageInfo, raw []byte) error {
	var cfg struct {
		Architecture string `json:"architecture"`
		Created      string `json:"created"`
		Config       struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	info.Architecture = cfg.Architecture
	if v, ok := cfg.Config.Labels["org.opencontainers.image.version"]; ok {
		info.Version = v
	} else {
		info.Version = cfg.Config.Labels["version"]
	}
	if cfg.Created != "" {
		t, err := time.Parse(time.RFC3339Nano, cfg.Created)
		if err != nil {
			return fmt.Errorf("image config: created %q: %w", cfg.Created, err)
		}
		info.Created = t.UTC()
	}
	return nil
}
