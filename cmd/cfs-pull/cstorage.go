package main

import (
	"errors"
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

// cstorageSummary is --json's summary of an import from containers-storage.
type cstorageSummary struct {
	*pull.Summary
	ContainersStorage *pull.CStorageStats `json:"containersStorage"`
	Reflink           string              `json:"reflink"`
}

// fetchCStorage imports from containers-storage by cloning the layers'
// files (lib/pull.FromContainersStorage) instead of reading blobs.
func fetchCStorage(c *cli.Context, repo *composefs.Repository, rep *progress.Reporter, name string) (*stream.Image, *fstree.Dir, any, []string, error) {
	ref, err := cstorage.ParseReference(strings.TrimPrefix(name, cstoragePrefix))
	if err != nil {
		return nil, nil, nil, nil, cliutil.Usage("%v", err)
	}
	if ref.GraphRoot == "" {
		ref.GraphRoot = cstorage.DefaultGraphRoot(c.String("sysroot"))
	}
	store, err := cstorage.Open(ref.GraphRoot, ref.RunRoot)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer store.Close()
	img, err := store.FindImage(ref.Image)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	opts := pull.CStorageOptions{Tag: c.String("tag"), Jobs: c.Int("jobs"), Progress: pull.ReportCStorage(rep)}
	if s := c.String("reflink"); s != "" {
		p, err := reflink.ParsePolicy(s)
		if err != nil || p == reflink.Never {
			return nil, nil, nil, nil, cliutil.Usage("--reflink=%s: want always or auto", s)
		}
		opts.Policy = p
	} else {
		opts.Policy = pull.DefaultCStoragePolicy(repo, store)
	}
	res, st, err := pull.FromContainersStorage(c.Context, repo, store, img, name, opts)
	if errors.Is(err, reflink.ErrRefused) {
		return nil, nil, nil, nil, cliutil.Hint(err, "--reflink=always (the default where reflinks work) never copies; use --reflink=auto to copy the bytes instead")
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sum := pull.Summarize(name, img.ManifestDigest, res)
	lines := []string{
		fmt.Sprintf("%s: image %s, manifest %s, composefs image %x, tag %s", name, img.ID, img.ManifestDigest, res.ImageID, res.Tag),
		fmt.Sprintf("layers imported %d (%d through Store.Diff), already present %d; objects reflinked %d (%s), copied %d (%s), already present %d; reflink=%s",
			len(img.Layers)-st.LayersPresent, st.LayersDiffed, st.LayersPresent, st.Reflinked, progress.HumanBytes(st.ReflinkedBytes), st.Copied, progress.HumanBytes(st.CopiedBytes), st.Present, opts.Policy),
	}
	if res.Implied > 0 {
		lines = append(lines, fmt.Sprintf("note: layers used %d parent directories without listing them; created as 0755 root:root", res.Implied))
	}
	lines = append(lines, pull.BootLines(sum.BootImage, sum.BootNote)...)
	rec := pull.Record(name, img.ManifestDigest, img.Manifest, img.ConfigDigest, img.Config, res.DiffIDs, repo, res.Tag, res.ImageID)
	rec.Stores.ContainersStorage = &stream.ContainersStorageStore{Root: store.GraphRoot(), RunRoot: store.RunRoot(), ImageID: img.ID}
	if err := pull.FillLayerDigests(rec, img.Manifest); err != nil {
		return nil, nil, nil, nil, err
	}
	return rec, res.Tree, cstorageSummary{sum, st, opts.Policy.String()}, lines, nil
}
