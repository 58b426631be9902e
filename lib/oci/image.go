package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// ErrNoSuchImage is wrapped by OpenImage for a manifest digest the
// repository holds no image for.
var ErrNoSuchImage = errors.New("no such image")

// Named refs composefs-rs puts in a config stream for the EROFS images
// made from it; they are what keeps an image alive through GC.
const (
	RefImageV1 = "composefs.image.v1"
	// RefBootImageV1 names the V1 boot image (lib/bootimage) of a
	// bootable image; bootc caches its boot image id under this ref.
	RefBootImageV1 = "composefs.image.boot.v1"
)

// Digest is the "sha256:<hex>" digest of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// HaveLayer reports whether the layer is stored intact enough to be used
// without fetching it again: its stream exists and hashes to its name,
// and every object it refers to exists with the size its tar header
// gives (and the fs-verity digest, where the kernel measures one). A
// stored layer that fails any of this (a crash lost some bytes, an object
// was deleted) is fetched again, which rewrites what is wrong.
func HaveLayer(repo *composefs.Repository, diffID string) (bool, error) {
	_, ok, err := repo.StreamID(composefs.LayerContentID(diffID))
	if err != nil || !ok {
		return false, err
	}
	if err := ReadLayer(repo, diffID, func(*Member) error { return nil }); err != nil {
		return false, nil
	}
	return true, nil
}

// BuildTree merges the stored layers, in order, into the tree composefs
// mounts for the image.
func BuildTree(repo *composefs.Repository, diffIDs []string) (*fstree.Dir, *Merger, error) {
	return mergeLayers(repo, diffIDs, true)
}

// BuildCheckedTree is BuildTree for layers the caller has stored or
// checked (HaveLayer) itself, holding the repository open since: it does
// not check each object again. A pull of 100k files spent a second of
// its last, single-threaded step on those lstat calls.
func BuildCheckedTree(repo *composefs.Repository, diffIDs []string) (*fstree.Dir, *Merger, error) {
	return mergeLayers(repo, diffIDs, false)
}

// BuildCheckedTreeFrom is BuildCheckedTree taking the members of layer i
// from logs[i] where that is the complete log of its import
// (ImportLayerLogged), and reading the stored stream of the others: the
// same tree, errors and ImpliedDirs, without parsing again the tars a
// pull has just imported.
func BuildCheckedTreeFrom(repo *composefs.Repository, diffIDs []string, logs []*MemberLog) (*fstree.Dir, *Merger, error) {
	return mergeLayersFrom(repo, diffIDs, logs, false)
}

func mergeLayers(repo *composefs.Repository, diffIDs []string, check bool) (*fstree.Dir, *Merger, error) {
	return mergeLayersFrom(repo, diffIDs, nil, check)
}

func mergeLayersFrom(repo *composefs.Repository, diffIDs []string, logs []*MemberLog, check bool) (*fstree.Dir, *Merger, error) {
	mg := NewMerger()
	for i, d := range diffIDs {
		var err error
		if i < len(logs) && logs[i].usable() {
			err = logs[i].Replay(mg.Apply)
		} else {
			err = readLayer(repo, d, mg.Apply, check)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("layer %s: %w", d, err)
		}
	}
	if err := mg.transformForOCI(AllowlistOnly); err != nil {
		return nil, nil, err
	}
	return mg.Root, mg, nil
}

// WriteErofs builds the V1 EROFS image of a tree and stores it.
func WriteErofs(repo *composefs.Repository, root *fstree.Dir) ([]byte, error) {
	// Built straight from the tree: the writer's inodes and the tree are
	// the peak of a pull's memory, and no third copy joins them.
	return repo.WriteImageFrom(func(w io.Writer) error {
		return fstree.WriteErofs(w, root, erofs.V1)
	})
}

// StoreImage writes the config and manifest streams of an image whose
// layers and EROFS image are already stored, in composefs-rs's shape: the
// config stream holds the config as one object and names each layer
// stream (by diff ID) and the image (composefs.image.v1); the manifest
// stream holds the manifest and names the config stream and the layers.
// Each stream name appears only after what it refers to is durable.
func StoreImage(repo *composefs.Repository, manifest, config []byte, diffIDs []string, imageID []byte) error {
	return StoreBootableImage(repo, manifest, config, diffIDs, imageID, nil)
}

// StoreBootableImage is StoreImage that also names the image's boot image
// (RefBootImageV1) when bootImageID is not nil.
func StoreBootableImage(repo *composefs.Repository, manifest, config []byte, diffIDs []string, imageID, bootImageID []byte) error {
	alg := uint8(repo.Algorithm())
	layerIDs := make([][]byte, len(diffIDs))
	for i, d := range diffIDs {
		id, ok, err := repo.StreamID(composefs.LayerContentID(d))
		if err != nil || !ok {
			return fmt.Errorf("layer stream for %s is missing (%v)", d, err)
		}
		layerIDs[i] = id
	}
	cw, err := splitstream.NewWriter(alg, splitstream.ContentOCIConfig)
	if err != nil {
		return err
	}
	configObj, err := repo.EnsureObject(config)
	if err != nil {
		return err
	}
	cw.WriteExternal(configObj, int64(len(config)))
	for i, d := range diffIDs {
		cw.AddNamedRef(d, layerIDs[i])
	}
	if imageID != nil {
		cw.AddNamedRef(RefImageV1, imageID)
	}
	if bootImageID != nil {
		cw.AddNamedRef(RefBootImageV1, bootImageID)
	}
	configDigest := Digest(config)
	configStream, err := repo.WriteStream(composefs.ConfigContentID(configDigest), cw)
	if err != nil {
		return err
	}
	mw, err := splitstream.NewWriter(alg, splitstream.ContentOCIManifest)
	if err != nil {
		return err
	}
	manifestObj, err := repo.EnsureObject(manifest)
	if err != nil {
		return err
	}
	mw.WriteExternal(manifestObj, int64(len(manifest)))
	mw.AddNamedRef("config:"+configDigest, configStream)
	for i, d := range diffIDs {
		mw.AddNamedRef(d, layerIDs[i])
	}
	_, err = repo.WriteStream(composefs.ManifestContentID(Digest(manifest)), mw)
	return err
}

// StoredImage is an image read back from the repository.
type StoredImage struct {
	ManifestDigest string
	Manifest       []byte
	ConfigDigest   string
	Config         []byte
	DiffIDs        []string
	ImageID        []byte // the V1 EROFS image, nil if none is named
	BootImageID    []byte // the V1 boot image, nil if none is named
}

// OpenImage reads an image's manifest and config back from their streams
// and checks their digests.
func OpenImage(repo *composefs.Repository, manifestDigest string) (*StoredImage, error) {
	if _, ok, err := repo.StreamID(composefs.ManifestContentID(manifestDigest)); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: manifest %s (in %s)", ErrNoSuchImage, manifestDigest, repo.Path())
	}
	manifest, refs, err := readSingleObjectStream(repo, composefs.ManifestContentID(manifestDigest), splitstream.ContentOCIManifest)
	if err != nil {
		return nil, err
	}
	if got := Digest(manifest); got != manifestDigest {
		return nil, fmt.Errorf("manifest stream %s holds bytes with digest %s", manifestDigest, got)
	}
	img := &StoredImage{ManifestDigest: manifestDigest, Manifest: manifest}
	for name := range refs {
		if d, ok := bytes.CutPrefix([]byte(name), []byte("config:")); ok {
			img.ConfigDigest = string(d)
		}
	}
	if img.ConfigDigest == "" {
		return nil, fmt.Errorf("manifest stream %s names no config", manifestDigest)
	}
	config, crefs, err := readSingleObjectStream(repo, composefs.ConfigContentID(img.ConfigDigest), splitstream.ContentOCIConfig)
	if err != nil {
		return nil, err
	}
	if got := Digest(config); got != img.ConfigDigest {
		return nil, fmt.Errorf("config stream %s holds bytes with digest %s", img.ConfigDigest, got)
	}
	img.Config = config
	cfg, err := bootcconv.ParseConfig(config)
	if err != nil {
		return nil, err
	}
	if img.DiffIDs, err = cfg.DiffIDs(); err != nil {
		return nil, err
	}
	img.ImageID = crefs[RefImageV1]
	img.BootImageID = crefs[RefBootImageV1]
	return img, nil
}

func readSingleObjectStream(repo *composefs.Repository, contentID string, contentType uint64) ([]byte, map[string][]byte, error) {
	sr, _, err := repo.OpenStream(contentID, contentType)
	if err != nil {
		return nil, nil, err
	}
	defer sr.Close()
	var buf bytes.Buffer
	open := func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) }
	if _, err := sr.Reassemble(&buf, open); err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", contentID, err)
	}
	return buf.Bytes(), sr.NamedRefs, nil
}
