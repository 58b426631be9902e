package gc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// Live is what the host's deployments pin: the images nothing may remove.
type Live struct {
	// Manifests: the manifest digest of every deployment's image.
	Manifests []string
	// Verities: composefs-native deployments' EROFS images, which stay
	// even without a config stream naming them (composefs-rs's
	// additional roots, as bootc passes them).
	Verities []string
	// Configs: config digests the ostree commits record
	// (ostree.container.image-config), which protect containers-storage
	// images even where the composefs repository lacks the image.
	Configs []string
	// Unknown: deployments whose image could not be told (a commit
	// without ostree.manifest-digest, an origin without manifest_digest);
	// reported, since their image may be collected.
	Unknown []string
}

// LiveImages collects what the deployments of h pin. It is generous on
// purpose: every deployment the bootloader knows (booted, staged,
// rollback, pinned ones), plus every deployment directory on disk, since
// a staged ostree deployment has no entry until shutdown and a
// composefs one may be mid-staging; a leftover costs space, a wrong
// deletion a host that does not boot.
func LiveImages(h *sysroot.Host) (*Live, error) {
	l := &Live{}
	manifests := map[string]bool{}
	verities := map[string]bool{}
	addM := func(md string) {
		if md != "" && !manifests[md] {
			manifests[md] = true
			l.Manifests = append(l.Manifests, md)
		}
	}
	var deps []*sysroot.Deployment
	for _, d := range append([]*sysroot.Deployment{h.Booted, h.Staged, h.Rollback}, h.Other...) {
		if d != nil {
			deps = append(deps, d)
		}
	}
	if h.Kind == sysroot.KindOstree {
		repo, err := ostree.Open(filepath.Join(h.Root, sysroot.OstreeRepoPath))
		if err != nil {
			return nil, err
		}
		defer repo.Close()
		commits := map[string]bool{}
		for _, d := range deps {
			commits[d.Commit] = true
		}
		dirs, err := filepath.Glob(filepath.Join(h.Root, "ostree", "deploy", "*", "deploy", "*"))
		if err != nil {
			return nil, err
		}
		for _, dir := range dirs {
			name := filepath.Base(dir)
			if strings.HasSuffix(name, ".origin") {
				continue
			}
			if c, _, ok := strings.Cut(name, "."); ok && len(c) == 64 {
				commits[c] = true
			}
		}
		var list []string
		for c := range commits {
			list = append(list, c)
		}
		sort.Strings(list)
		for _, c := range list {
			commit, err := repo.ReadCommit(c)
			if err != nil {
				l.Unknown = append(l.Unknown, fmt.Sprintf("ostree commit %s: %v", c, err))
				continue
			}
			v, ok := commit.Lookup(bootcconv.KeyManifestDigest)
			s, _ := v.Value.(string)
			if !ok || s == "" {
				l.Unknown = append(l.Unknown, fmt.Sprintf("ostree commit %s has no ostree.manifest-digest", c))
				continue
			}
			addM(s)
			if v, ok := commit.Lookup(bootcconv.KeyImageConfig); ok {
				if cfg, ok := v.Value.(string); ok && cfg != "" {
					sum := sha256.Sum256([]byte(cfg))
					l.Configs = append(l.Configs, "sha256:"+hex.EncodeToString(sum[:]))
				}
			}
		}
		return l, nil
	}

	addV := func(v string) {
		if v != "" && !verities[v] {
			verities[v] = true
			l.Verities = append(l.Verities, v)
		}
	}
	for _, d := range deps {
		addV(d.Verity)
		if d.ManifestDigest == "" {
			l.Unknown = append(l.Unknown, fmt.Sprintf("deployment %s has no [image] manifest_digest", d.Verity))
		}
		addM(d.ManifestDigest)
	}
	// State directories without an entry: bootc's GC calls them orphans
	// and removes them; until it does, their images stay.
	states, err := os.ReadDir(filepath.Join(h.Root, "state", "deploy"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range states {
		v := e.Name()
		if !e.IsDir() || verities[v] {
			continue
		}
		addV(v)
		o, err := sysroot.ReadOrigin(filepath.Join(h.Root, "state", "deploy", v, v+".origin"))
		if err != nil || o.ManifestDigest == "" {
			l.Unknown = append(l.Unknown, fmt.Sprintf("state/deploy/%s has no origin with [image] manifest_digest", v))
			continue
		}
		addM(o.ManifestDigest)
	}
	return l, nil
}
