package clone

import (
	"fmt"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/reflink"
)

// RecoveredName is the name bootc gives an image it restores into
// containers-storage from composefs: unique per config, so a booted and a
// rollback image never take each other's name.
func RecoveredName(configDigest string) string {
	h := strings.TrimPrefix(configDigest, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return "localhost/bootc-recovered:" + h
}

// RestoreImage writes the image the composefs repository holds under
// manifestDigest into the store, as ToContainersStorage does for a list
// (layers from the splitstreams, bodies cloned from the objects, each
// written layer checked to give back its diff ID before the image is
// recorded), without an object list: what `cfs-fsck images --repair`
// needs. names nil means RecoveredName. policy 0 picks Always where the
// stores can share extents, Auto elsewhere.
func RestoreImage(store *cstorage.Store, repo *composefs.Repository, manifestDigest string, names []string, policy reflink.Policy) (*CStorageSummary, error) {
	sum := &CStorageSummary{Root: store.GraphRoot()}
	img, err := oci.OpenImage(repo, manifestDigest)
	if err != nil {
		return sum, fmt.Errorf("composefs repository %s: %w", repo.Path(), err)
	}
	cfg, err := bootcconv.ParseConfig(img.Config)
	if err != nil {
		return sum, err
	}
	if policy == 0 {
		policy = reflink.Always
		if preflightCStorage(store, repo) != nil {
			policy = reflink.Auto
		}
	}
	sum.Policy = policy.String()
	if names == nil {
		names = []string{RecoveredName(img.ConfigDigest)}
	}
	sum.Names = names
	n := &cstorage.NewImage{
		Manifest: img.Manifest, Config: img.Config, DiffIDs: img.DiffIDs, Names: names, Policy: policy,
		Layer: func(i int) (cstorage.ChunkReader, error) { return openLayerChunks(repo, img.DiffIDs[i]) },
	}
	sum.ImageID = n.ImageID()
	top, ws, err := store.WriteLayers(n)
	sum.LayersWritten, sum.LayersPresent = ws.LayersWritten, ws.LayersPresent
	sum.Reflinked, sum.ReflinkedBytes, sum.Copied, sum.CopiedBytes = ws.Cloned, ws.ClonedBytes, ws.Copied, ws.CopiedBytes
	if err == nil {
		created, _ := cfg.CreatedTime()
		sum.ImageCreated, err = store.RecordImage(n, top, created)
	}
	if err != nil && !sum.ImageCreated {
		dropLayers(store, ws.Written)
	}
	return sum, err
}
