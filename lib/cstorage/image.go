package cstorage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"

	"github.com/cfs-project/cfs/lib/bootcconv"
)

// Image is an image found in a store, with the documents c/image recorded
// for it and its layer chain checked against the config.
type Image struct {
	ID             string // config digest hex
	Names          []string
	Manifest       []byte // the "manifest" big data: what composefs-rs and bootc read
	ManifestDigest string
	Config         []byte
	ConfigDigest   string
	Layers         []Layer // base first, in the config's rootfs.diff_ids order
}

// Layer is one layer of an image's chain.
type Layer struct {
	ID, Parent string
	DiffID     string // from the config; the store's record agrees or is empty
	DiffSize   int64  // -1 if the store does not know it
	TarSplit   bool   // the store kept the layer's tar-split
}

// DiffIDs lists the layers' diff IDs, base first.
func (img *Image) DiffIDs() []string {
	out := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.DiffID
	}
	return out
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ErrImageUnknown matches (errors.Is) the error FindImage returns for an
// image the store does not hold.
var ErrImageUnknown = storage.ErrImageUnknown

// FindImage resolves ref, an image ID ("sha256:" optional, or an
// unambiguous prefix) or a name as podman would spell it after a pull
// (busybox → docker.io/library/busybox:latest), and reads the image's
// config, manifest and layer chain. Everything is checked: the config's
// digest against the ID, the manifest's config against the ID, and the
// chain against the config's rootfs.diff_ids.
func (s *Store) FindImage(ref string) (*Image, error) {
	st, pinned, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	img := &Image{ID: st.ID, Names: st.Names}
	where := fmt.Sprintf("containers-storage image %s", st.ID)
	if !hexID.MatchString(st.ID) {
		return nil, fmt.Errorf("%s: the ID is not a config digest (an image not pulled by c/image?)", where)
	}
	img.ConfigDigest = "sha256:" + st.ID
	if img.Config, err = s.s.ImageBigData(st.ID, img.ConfigDigest); err != nil {
		return nil, fmt.Errorf("%s: reading its config: %w", where, err)
	}
	if got := digestOf(img.Config); got != img.ConfigDigest {
		return nil, fmt.Errorf("%s: its config has digest %s", where, got)
	}
	if err := img.readManifest(s, st, pinned); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	diffIDs, err := configDiffIDs(img.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var chain []Layer
	for id := st.TopLayer; id != ""; {
		l, err := s.s.Layer(id)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %s: %w", where, id, err)
		}
		if len(chain) > len(diffIDs) {
			break // reported below; a cycle must not loop forever
		}
		_, tsErr := os.Stat(s.tarSplitPath(id))
		chain = append(chain, Layer{ID: id, Parent: l.Parent, DiffID: l.UncompressedDigest.String(), DiffSize: l.UncompressedSize, TarSplit: tsErr == nil})
		id = l.Parent
	}
	if len(chain) != len(diffIDs) {
		return nil, fmt.Errorf("%s: the layer chain has %d layers, the config lists %d diff IDs", where, len(chain), len(diffIDs))
	}
	for i := range chain {
		l := chain[len(chain)-1-i]
		if l.DiffID != "" && l.DiffID != diffIDs[i] {
			return nil, fmt.Errorf("%s: layer %d (%s) has diffID %s, the config says %s", where, i, l.ID, l.DiffID, diffIDs[i])
		}
		l.DiffID = diffIDs[i]
		img.Layers = append(img.Layers, l)
	}
	return img, nil
}

// lookup finds the stored image for ref, and for name@digest the
// manifest digest it is pinned to.
func (s *Store) lookup(ref string) (img *storage.Image, pinned string, err error) {
	id := strings.TrimPrefix(ref, "sha256:")
	if hexID.MatchString(id) {
		img, err = s.image(ref, id)
		return img, "", err
	}
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		if dg, ok := named.(reference.Digested); ok {
			img, err := s.byManifestDigest(ref, named.Name(), dg.Digest().String())
			return img, dg.Digest().String(), err
		}
		name := reference.TagNameOnly(named).String()
		if img, err := s.s.Image(name); err == nil {
			return img, "", nil
		}
	}
	// An ID prefix, or a name stored in a spelling normalisation does
	// not produce.
	img, err = s.image(ref, ref)
	return img, "", err
}

// byManifestDigest resolves name@sha256:... as c/image does: the image
// whose manifest has that digest (big data "manifest-<digest>", or its
// Digests). The digest pins the bytes, so among several images an image
// named in repository repo is preferred, and otherwise any will do.
func (s *Store) byManifestDigest(ref, repo, md string) (*storage.Image, error) {
	imgs, err := s.s.Images()
	if err != nil {
		return nil, fmt.Errorf("containers-storage %s: listing images: %w", s.graphRoot, err)
	}
	var found *storage.Image
	for i := range imgs {
		img := &imgs[i]
		if !hasManifest(img, md) {
			continue
		}
		for _, n := range img.Names {
			if named, err := reference.ParseNormalizedNamed(n); err == nil && named.Name() == repo {
				return img, nil
			}
		}
		if found == nil {
			found = img
		}
	}
	if found == nil {
		return nil, fmt.Errorf("containers-storage %s: no image has manifest %s (%q): %w", s.graphRoot, md, ref, ErrImageUnknown)
	}
	return found, nil
}

func hasManifest(img *storage.Image, md string) bool {
	for _, d := range img.Digests {
		if d.String() == md {
			return true
		}
	}
	for _, k := range img.BigDataNames {
		if k == "manifest-"+md {
			return true
		}
	}
	return false
}

func (s *Store) image(ref, key string) (*storage.Image, error) {
	img, err := s.s.Image(key)
	if errors.Is(err, storage.ErrImageUnknown) {
		return nil, fmt.Errorf("containers-storage %s: image %q is not in the store: %w", s.graphRoot, ref, ErrImageUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("containers-storage %s: image %q: %w", s.graphRoot, ref, err)
	}
	return img, nil
}

// readManifest takes the "manifest" big data, the one composefs-rs reads
// (the last one c/image wrote for this config), or the manifest named by
// the image's digest if that key is missing. A reference pinned to a
// manifest digest reads that manifest.
func (img *Image) readManifest(s *Store, st *storage.Image, pinned string) error {
	var m []byte
	var err error
	if pinned != "" {
		if m, err = s.s.ImageBigData(st.ID, "manifest-"+pinned); err != nil {
			m, err = s.s.ImageBigData(st.ID, storage.ImageDigestBigDataKey)
		}
		if err == nil && digestOf(m) != pinned {
			return fmt.Errorf("it has no manifest %s", pinned)
		}
	} else {
		m, err = s.s.ImageBigData(st.ID, storage.ImageDigestBigDataKey)
	}
	if err != nil && pinned == "" && st.Digest != "" {
		m, err = s.s.ImageBigData(st.ID, "manifest-"+st.Digest.String())
	}
	if err != nil {
		return fmt.Errorf("reading its manifest: %w", err)
	}
	mime := manifest.GuessMIMEType(m)
	if manifest.MIMETypeIsMultiImage(mime) {
		return errors.New("its manifest is a manifest list, not an image manifest")
	}
	parsed, err := manifest.FromBlob(m, mime)
	if err != nil {
		return fmt.Errorf("its manifest: %w", err)
	}
	if got := parsed.ConfigInfo().Digest.String(); got != img.ConfigDigest {
		return fmt.Errorf("its manifest names config %s", got)
	}
	img.Manifest, img.ManifestDigest = m, digestOf(m)
	return nil
}

func configDiffIDs(config []byte) ([]string, error) {
	c, err := bootcconv.ParseConfig(config)
	if err != nil {
		return nil, fmt.Errorf("its config: %w", err)
	}
	ids, err := c.DiffIDs()
	if err != nil {
		return nil, fmt.Errorf("its config: %w", err)
	}
	return ids, nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tarSplitPath is where the overlay layer store keeps a layer's tar-split.
// v1.64.1 has no API that returns it raw; composefs-rs reads it here too.
func (s *Store) tarSplitPath(layerID string) string {
	return filepath.Join(s.graphRoot, "overlay-layers", layerID+".tar-split.gz")
}

// LayerID is the ID c/image gives a layer with this diff ID on top of
// parent, so that a later pull of the same image finds our layers.
func LayerID(parent, diffID string) string {
	h := strings.TrimPrefix(diffID, "sha256:")
	if parent == "" {
		return h
	}
	sum := sha256.Sum256([]byte(parent + "+" + h))
	return hex.EncodeToString(sum[:])
}
