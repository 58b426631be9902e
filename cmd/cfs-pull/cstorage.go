package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/progress"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

const cstoragePrefix = "containers-storage:"

// fetchCStorage imports from containers-storage by cloning the layers'
// files (lib/pull.FromContainersStorage) instead of reading blobs.
func fetchCStorage(ctx context.Context, c *cli.Context, repo *composefs.Repository, rep *progress.Reporter, name string) (*stream.Image, *fstree.Dir, error) {
	ref, err := cstorage.ParseReference(strings.TrimPrefix(name, cstoragePrefix))
	if err != nil {
		return nil, nil, cliutil.Usage("cfs-pull: %v", err)
	}
	if ref.GraphRoot == "" {
		ref.GraphRoot = cstorage.DefaultGraphRoot(c.String("sysroot"))
	}
	store, err := cstorage.Open(ref.GraphRoot, ref.RunRoot)
	if err != nil {
		return nil, nil, err
	}
	defer store.Close()
	img, err := store.FindImage(ref.Image)
	if err != nil {
		return nil, nil, err
	}
	opts := pull.CStorageOptions{Tag: c.String("tag")}
	if s := c.String("reflink"); s != "" {
		p, err := reflink.ParsePolicy(s)
		if err != nil || p == reflink.Never {
			return nil, nil, cliutil.Usage("cfs-pull: --reflink=%s: want always or auto", s)
		}
		opts.Policy = p
	} else {
		opts.Policy = pull.DefaultCStoragePolicy(repo, store)
	}
	opts.Progress = func(ev pull.Event) {
		if ev.Kind == "layer-done" || ev.Kind == "layer-present" {
			what := "already in the repository"
			if ev.Kind == "layer-done" {
				what = fmt.Sprintf("%s, %d objects new, %d present", humanBytes(ev.Bytes), ev.Stats.ObjectsNew, ev.Stats.ObjectsPresent)
			}
			rep.Progress(progress.Bytes{Task: "importing", Description: "Importing from containers-storage", ID: "cstorage-import",
				Steps: int64(ev.Layer + 1), StepsTotal: int64(ev.Layers)}, true, fmt.Sprintf("layer %d/%d %.20s: %s", ev.Layer+1, ev.Layers, strings.TrimPrefix(ev.Digest, "sha256:"), what))
		}
	}
	res, st, err := pull.FromContainersStorage(ctx, repo, store, img, name, opts)
	if err != nil {
		return nil, nil, err
	}
	rep.Logf("cfs-pull: %s: image %s, manifest %s, composefs image %x, tag %s", name, img.ID, img.ManifestDigest, res.ImageID, res.Tag)
	rep.Logf("cfs-pull: layers imported %d (%d through Store.Diff), already present %d; objects reflinked %d (%s), copied %d (%s), already present %d; reflink=%s",
		len(img.Layers)-st.LayersPresent, st.LayersDiffed, st.LayersPresent, st.Reflinked, humanBytes(st.ReflinkedBytes), st.Copied, humanBytes(st.CopiedBytes), st.Present, opts.Policy)
	if res.Implied > 0 {
		rep.Logf("cfs-pull: note: layers used %d parent directories without listing them; created as 0755 root:root", res.Implied)
	}
	rec := imageRecord(name, img.ManifestDigest, img.Manifest, img.ConfigDigest, img.Config, res.DiffIDs, repo, res.Tag, res.ImageID)
	rec.Stores.ContainersStorage = &stream.ContainersStorageStore{Root: store.GraphRoot(), RunRoot: store.RunRoot(), ImageID: img.ID}
	if err := fillLayerDigests(rec, img.Manifest); err != nil {
		return nil, nil, err
	}
	return rec, res.Tree, nil
}
