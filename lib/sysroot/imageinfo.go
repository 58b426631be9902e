package sysroot

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/ostree"
)

// ImageInfo is what bootc's ImageStatus says about a deployment's image
// beyond its reference; it lives in the stores, not next to the deployment.
// bootc reads it differently for the two kinds of host, and so do we
// (bootcconv says how).
type ImageInfo struct {
	ManifestDigest string
	Architecture   string
	Version        string    // "" when the image names none
	Created        time.Time // zero when the image names none
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
	cfg, err := bootcconv.ParseConfig(img.Config)
	if err != nil {
		return info, fmt.Errorf("%s: image %s: %w", repo.Path(), d.ManifestDigest, err)
	}
	m, err := bootcconv.ParseManifest(img.Manifest)
	if err != nil {
		return info, fmt.Errorf("%s: image %s: %w", repo.Path(), d.ManifestDigest, err)
	}
	// bootc's composefs status: the version from the manifest's
	// annotation, the time from the config's created.
	info.Architecture = cfg.Architecture
	info.Version, _ = m.Version()
	info.Created, _ = cfg.CreatedTime()
	return info, nil
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
	if v, ok := c.Lookup(bootcconv.KeyManifestDigest); ok {
		if s, ok := v.Value.(string); ok {
			info.ManifestDigest, d.ManifestDigest = s, s
		}
	}
	if v, ok := c.Lookup(bootcconv.KeySynthesized); ok {
		info.Synthesized, _ = v.Value.(bool)
	}
	if v, ok := c.Lookup(bootcconv.KeyImageConfig); ok {
		if s, ok := v.Value.(string); ok {
			cfg, err := bootcconv.ParseConfig([]byte(s))
			if err != nil {
				return info, fmt.Errorf("deployment %s: commit %s: %w", d.Dir, d.Commit, err)
			}
			// bootc's ostree status: version_for_config, and the
			// created label before the config's created.
			info.Architecture = cfg.Architecture
			info.Version, _ = cfg.Version()
			info.Created, _ = cfg.StatusTimestamp()
		}
	}
	return info, nil
}
