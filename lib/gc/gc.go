// Package gc removes what no deployment of a bootc host needs, in the
// composefs repository (as composefs-rs's garbage collection does) and in
// bootc's containers-storage, and leaves the ostree repository to
// `ostree admin cleanup`, which owns its pruning.
package gc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.podman.io/storage"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// Options tune a collection.
type Options struct {
	// DryRun computes and reports the same, and removes nothing. It takes
	// the repository lock shared, as composefs-rs's gc_dry_run does.
	DryRun bool
	// GraphRoot and RunRoot of bootc's containers-storage; "" for
	// <sysroot>/ostree/bootc/storage and cstorage.DefaultRunRoot.
	GraphRoot, RunRoot string
	// Locked, if set, is called once the repository lock is held (tests
	// use it to start a concurrent pull).
	Locked func()
}

// RemovedImage is a containers-storage image the collection removed.
type RemovedImage struct {
	ID     string   `json:"id"`
	Names  []string `json:"names"`
	Layers int      `json:"layers"`
}

// Result says what was (or, in a dry run, would be) removed.
type Result struct {
	DryRun bool `json:"dryRun"`
	// Live: the manifest digests the deployments pin.
	Live []string `json:"live"`
	// Unknown: deployments whose image could not be told.
	Unknown []string `json:"unknown"`
	// Tagged: bootc tags re-created for live images that had lost theirs.
	Tagged []string `json:"tagged"`
	// Untagged: bootc tags of images no deployment pins.
	Untagged []string `json:"untagged"`
	// ContainersStorage: images removed from bootc's store.
	ContainersStorage []RemovedImage `json:"containersStorage"`
	// composefs-rs's GcResult.
	ObjectsRemoved int   `json:"objectsRemoved"`
	ObjectsBytes   int64 `json:"objectsBytes"`
	ImagesPruned   int   `json:"imagesPruned"`
	StreamsPruned  int   `json:"streamsPruned"`
}

// Collect removes what the deployments of h do not pin. Order matters:
// tags first (so the sweep sees what is garbage), then containers-storage
// (whose candidates are recognised by the composefs configs that are about
// to go), then the composefs sweep.
func Collect(h *sysroot.Host, opts Options) (*Result, error) {
	res := &Result{DryRun: opts.DryRun, Live: []string{}, Unknown: []string{}, Tagged: []string{}, Untagged: []string{}, ContainersStorage: []RemovedImage{}}
	if opts.GraphRoot == "" {
		opts.GraphRoot = cstorage.DefaultGraphRoot(h.Root)
	}
	live, err := LiveImages(h)
	if err != nil {
		return nil, err
	}
	res.Live = append(res.Live, live.Manifests...)
	res.Unknown = append(res.Unknown, live.Unknown...)

	repo, err := composefs.Open(filepath.Join(h.Root, "composefs"))
	if errors.Is(err, composefs.ErrNotRepository) {
		repo = nil
	} else if err != nil {
		return nil, err
	}
	if repo != nil {
		defer repo.Close()
		// The exclusive lock waits for every running pull to finish and
		// keeps new ones out until the sweep is done: nothing a pull has
		// written but not yet tagged is ever looked at.
		if !opts.DryRun {
			if err := repo.LockExclusive(); err != nil {
				return nil, err
			}
		}
	}
	if opts.Locked != nil {
		opts.Locked()
	}

	liveConfigs := map[string]bool{}
	for _, c := range live.Configs {
		liveConfigs[c] = true
	}
	liveManifests := map[string]bool{}
	for _, md := range live.Manifests {
		liveManifests[md] = true
	}
	// Every config digest in the repository, and which remain referenced
	// by a tag after untagging.
	var composefsConfigs, keptConfigs map[string]bool
	if repo != nil {
		for _, md := range live.Manifests {
			if img, err := oci.OpenImage(repo, md); err == nil {
				liveConfigs[img.ConfigDigest] = true
				if _, err := repo.ResolveTag(bootcconv.TagPrefix + md); err != nil {
					res.Tagged = append(res.Tagged, bootcconv.TagPrefix+md)
					if !opts.DryRun {
						if err := repo.SetTag(bootcconv.TagPrefix+md, md); err != nil {
							return nil, err
						}
					}
				}
			}
		}
		if keptConfigs, err = untag(repo, liveManifests, liveConfigs, opts.DryRun, res); err != nil {
			return nil, err
		}
		if composefsConfigs, err = configStreams(repo); err != nil {
			return nil, err
		}
	}
	// Without the composefs repository the live images' config digests
	// are not all known: containers-storage is left alone rather than
	// judged on half the facts.
	if repo != nil {
		if err := pruneCStorage(opts, liveConfigs, keptConfigs, composefsConfigs, res); err != nil {
			return nil, err
		}
	}
	if repo != nil {
		if err := sweep(repo, live.Verities, opts.DryRun, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// untag removes the bootc tags of images no deployment pins (by manifest,
// or by config: a re-pull through podman changes the manifest, not the
// config) and returns the config digests the remaining tags hold.
func untag(repo *composefs.Repository, liveManifests, liveConfigs map[string]bool, dryRun bool, res *Result) (map[string]bool, error) {
	tags, err := repo.Tags()
	if err != nil {
		return nil, fmt.Errorf("%s: listing tags: %w", repo.Path(), err)
	}
	sort.Strings(tags)
	kept := map[string]bool{}
	for _, t := range tags {
		md, err := repo.ResolveTag(t)
		var cfg string
		if err == nil {
			if img, err := oci.OpenImage(repo, md); err == nil {
				cfg = img.ConfigDigest
			}
		}
		if !strings.HasPrefix(t, bootcconv.TagPrefix) || (err == nil && (liveManifests[md] || liveConfigs[cfg])) {
			if cfg != "" {
				kept[cfg] = true
			}
			continue
		}
		res.Untagged = append(res.Untagged, t)
		if !dryRun {
			if err := os.Remove(filepath.Join(repo.Path(), "streams", "refs", "oci", composefs.EncodeTag(t))); err != nil {
				return nil, fmt.Errorf("untagging %s: %w", t, err)
			}
		}
	}
	return kept, nil
}

// configStreams lists the config digests of the repository's
// oci-config-* streams: the images composefs holds or held.
func configStreams(repo *composefs.Repository) (map[string]bool, error) {
	entries, err := os.ReadDir(filepath.Join(repo.Path(), "streams"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range entries {
		if d, ok := strings.CutPrefix(e.Name(), "oci-config-"); ok {
			out[d] = true
		}
	}
	return out, nil
}

// pruneCStorage removes from bootc's store the host images no root
// holds. An image is protected by its ID (a live config digest, or the
// config of a tag that stays), never by its name: rollback images lose
// their name to the next pull of the same reference. Only images that
// are recognisably bootc's host images are candidates: an ID that is a
// composefs config, or a localhost/bootc-* name. Anything else in the
// store (logically bound images, what someone copied there) is not ours
// to judge and stays.
func pruneCStorage(opts Options, liveConfigs, keptConfigs, composefsConfigs map[string]bool, res *Result) error {
	if _, err := os.Stat(opts.GraphRoot); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	store, err := cstorage.Open(opts.GraphRoot, opts.RunRoot)
	if err != nil {
		return err
	}
	defer store.Close()
	s := store.Storage()
	imgs, err := s.Images()
	if err != nil {
		return fmt.Errorf("containers-storage %s: %w", store.GraphRoot(), err)
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].ID < imgs[j].ID })
	for _, im := range imgs {
		d := "sha256:" + im.ID
		if liveConfigs[d] || keptConfigs[d] {
			continue
		}
		ours := composefsConfigs[d]
		for _, n := range im.Names {
			ours = ours || strings.HasPrefix(n, bootcconv.TagPrefix)
		}
		if !ours {
			continue
		}
		layers, err := s.DeleteImage(im.ID, !opts.DryRun)
		if errors.Is(err, storage.ErrImageUsedByContainer) {
			continue // a container runs on it: not garbage
		}
		if err != nil {
			return fmt.Errorf("containers-storage %s: removing image %s: %w", store.GraphRoot(), im.ID, err)
		}
		names := im.Names
		if names == nil {
			names = []string{}
		}
		res.ContainersStorage = append(res.ContainersStorage, RemovedImage{ID: im.ID, Names: names, Layers: len(layers)})
	}
	return nil
}
