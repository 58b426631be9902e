package cstorage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"

	"github.com/cfs-project/cfs/lib/reflink"
)

// NewImage is what WriteLayers and RecordImage need to put an image into
// a store.
type NewImage struct {
	Manifest, Config []byte
	DiffIDs          []string
	Names            []string
	// Layer opens layer i's tar as chunks.
	Layer func(i int) (ChunkReader, error)
	// Policy: reflink.Always (every body over 64 bytes shares its
	// extents), reflink.Auto (copy where FICLONE is refused).
	Policy reflink.Policy
	// TrustDiffIDs says each layer's tar is known to have its diff ID
	// (a trusted composefs repository's layer stream, which cfs-pull
	// named by the diff ID after hashing it): the tar is not hashed
	// again, so a cloned body is read only for its CRC64, and not at
	// all where BodyCRC knows it.
	TrustDiffIDs bool
	// BodyCRC, if not nil, gives the CRC-64/ISO of a file chunk's bytes
	// when it is known without reading them (recorded with the file by
	// its writer, and trusted by the caller); ok false: they are read.
	BodyCRC func(f *os.File) (crc uint64, ok bool)
}

// WriteStats counts what WriteLayers did.
type WriteStats struct {
	CloneStats
	LayersWritten, LayersPresent int
	Written                      []string // IDs of the layers written (and verified)
}

// ImageID is the ID c/image gives an image: its config digest.
func (n *NewImage) ImageID() string {
	sum := sha256.Sum256(n.Config)
	return hex.EncodeToString(sum[:])
}

// LayerIDs are the layers' IDs as c/image computes them.
func (n *NewImage) LayerIDs() []string {
	ids := make([]string, len(n.DiffIDs))
	parent := ""
	for i, d := range n.DiffIDs {
		ids[i] = LayerID(parent, d)
		parent = ids[i]
	}
	return ids
}

// WriteLayers puts every layer the store lacks into it, each through
// PrepareStagedLayer/ApplyStagedLayer with a differ that clones bodies
// and records tar-split, and returns the top layer's ID. A layer the
// store already has under the same ID is reused and never re-applied
// (ApplyStagedLayer would replace its files). Each written layer is
// verified (verifyLayer): Store.Diff gives back its diff ID. On error,
// the layers in Written are in the store and the caller removes them.
func (s *Store) WriteLayers(n *NewImage) (string, *WriteStats, error) {
	st := &WriteStats{}
	if n.Policy != reflink.Always && n.Policy != reflink.Auto {
		return "", st, fmt.Errorf("reflink policy %s: want always or auto", n.Policy)
	}
	ids := n.LayerIDs()
	var need []int
	for i, id := range ids {
		l, err := s.s.Layer(id)
		if err == nil {
			if l.UncompressedDigest != "" && l.UncompressedDigest.String() != n.DiffIDs[i] {
				return "", st, fmt.Errorf("containers-storage layer %s exists with diffID %s, not %s", id, l.UncompressedDigest, n.DiffIDs[i])
			}
			st.LayersPresent++
			continue
		}
		if !errors.Is(err, storage.ErrLayerUnknown) {
			return "", st, fmt.Errorf("containers-storage layer %s: %w", id, err)
		}
		need = append(need, i)
	}
	// Staging needs no parent, so the layers are laid out two at a time
	// (the work is reading and hashing); they are recorded in order.
	outs := make([]*drivers.DriverWithDifferOutput, len(ids))
	differs := make([]*cloneDiffer, len(ids))
	errs := make([]error, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, i := range need {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			chunks, err := n.Layer(i)
			if err != nil {
				errs[i] = err
				return
			}
			d := &cloneDiffer{chunks: chunks, diffID: n.DiffIDs[i], policy: n.Policy, ahead: true, trustDiffID: n.TrustDiffIDs, bodyCRC: n.BodyCRC}
			differs[i] = d
			outs[i], errs[i] = s.stageLayer(d)
			if c, ok := chunks.(io.Closer); ok {
				c.Close()
			}
			mu.Lock()
			st.Cloned += d.stats.Cloned
			st.ClonedBytes += d.stats.ClonedBytes
			st.Copied += d.stats.Copied
			st.CopiedBytes += d.stats.CopiedBytes
			st.Unread += d.stats.Unread
			st.UnreadBytes += d.stats.UnreadBytes
			mu.Unlock()
		}()
	}
	wg.Wait()
	cleanup := func(from int) {
		for j := from; j < len(outs); j++ {
			if outs[j] != nil {
				s.s.CleanupStagedLayer(outs[j])
				outs[j] = nil
			}
		}
	}
	for _, i := range need {
		if errs[i] != nil {
			cleanup(0)
			return "", st, errs[i]
		}
	}
	parent := ""
	for i, id := range ids {
		if outs[i] != nil {
			if _, err := s.s.ApplyStagedLayer(storage.ApplyStagedLayerOptions{
				ID: id, ParentLayer: parent, DiffOutput: outs[i],
				DiffOptions: &drivers.ApplyDiffWithDifferOpts{},
			}); err != nil {
				cleanup(i)
				return "", st, fmt.Errorf("containers-storage: recording layer %s: %w", n.DiffIDs[i], err)
			}
			outs[i] = nil
			st.LayersWritten++
			st.Written = append(st.Written, id)
			if err := s.verifyLayer(id, differs[i]); err != nil {
				cleanup(i + 1)
				return "", st, err
			}
		}
		parent = id
	}
	return parent, st, nil
}

// stageLayer lays a layer out in the store's staging area through d.
func (s *Store) stageLayer(d *cloneDiffer) (*drivers.DriverWithDifferOutput, error) {
	out, err := s.s.PrepareStagedLayer(&drivers.ApplyDiffWithDifferOpts{}, d)
	if err != nil {
		if out != nil {
			s.s.CleanupStagedLayer(out)
		}
		return nil, fmt.Errorf("containers-storage: writing layer %s: %w", d.diffID, err)
	}
	if out.UncompressedDigest.String() != d.diffID {
		s.s.CleanupStagedLayer(out)
		return nil, fmt.Errorf("containers-storage: layer %s came out as %s", d.diffID, out.UncompressedDigest)
	}
	return out, nil
}

// RecordImage records the image on top, with the config, the manifest
// under "manifest-<digest>" and "manifest" (what podman and bootc read),
// the config's creation date and the names, as c/image does at the end of
// a pull. An image already there with the same top layer only gains the
// missing names and big data; it reports created=false.
func (s *Store) RecordImage(n *NewImage, top string, created time.Time) (bool, error) {
	id := n.ImageID()
	md := digestOf(n.Manifest)
	configKey := "sha256:" + id
	bigData := []storage.ImageBigDataOption{
		{Key: configKey, Data: n.Config},
		{Key: "manifest-" + md, Data: n.Manifest},
		{Key: storage.ImageDigestBigDataKey, Data: n.Manifest},
	}
	// Names are added afterwards: CreateImage refuses a name another image
	// holds, AddNames moves it, which is what c/image does when a tag now
	// names a newer image (two releases of one OS under os:stable).
	_, err := s.s.CreateImage(id, nil, top, "", &storage.ImageOptions{CreationDate: created, BigData: bigData})
	if err == nil {
		if len(n.Names) > 0 {
			if err := s.s.AddNames(id, n.Names); err != nil {
				return true, fmt.Errorf("containers-storage: naming image %s: %w", id, err)
			}
		}
		return true, nil
	}
	if !errors.Is(err, storage.ErrDuplicateID) {
		return false, fmt.Errorf("containers-storage: recording image %s: %w", id, err)
	}
	img, err := s.s.Image(id)
	if err != nil {
		return false, fmt.Errorf("containers-storage: image %s: %w", id, err)
	}
	if img.TopLayer != top {
		return false, fmt.Errorf("containers-storage: image %s exists with top layer %s, not %s", id, img.TopLayer, top)
	}
	have := map[string]bool{}
	for _, k := range img.BigDataNames {
		have[k] = true
	}
	for _, b := range bigData {
		if have[b.Key] && b.Key != storage.ImageDigestBigDataKey {
			continue
		}
		if b.Key == storage.ImageDigestBigDataKey && have[b.Key] {
			cur, err := s.s.ImageBigData(id, b.Key)
			if err == nil && string(cur) == string(b.Data) {
				continue
			}
		}
		if err := s.s.SetImageBigData(id, b.Key, b.Data, manifest.Digest); err != nil {
			return false, fmt.Errorf("containers-storage: image %s: %w", id, err)
		}
	}
	var missing []string
	for _, name := range n.Names {
		found := false
		for _, have := range img.Names {
			found = found || have == name
		}
		if !found {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		if err := s.s.AddNames(id, missing); err != nil {
			return false, fmt.Errorf("containers-storage: naming image %s: %w", id, err)
		}
	}
	return false, nil
}
