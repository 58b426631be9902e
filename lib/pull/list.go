package pull

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"go.podman.io/image/v5/manifest"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/stream"
)

// OpenOrCreate opens the composefs repository at path, or creates it with
// alg if there is none. A path with a meta.json that does not open is an
// error, never a new repository over an old one.
func OpenOrCreate(path string, alg fsverity.Algorithm) (*composefs.Repository, error) {
	repo, err := composefs.Open(path)
	if err == nil {
		return repo, nil
	}
	if _, statErr := os.Stat(path + "/meta.json"); statErr == nil {
		return nil, err
	}
	return composefs.Create(path, alg)
}

// Record is the object list's image record for an image stored in repo.
// Layer digests, media types and sizes are left for the caller (from the
// source, or FillLayerDigests from the stored manifest).
func Record(source, manifestDigest string, manifest []byte, configDigest string, config []byte, diffIDs []string, repo *composefs.Repository, tag string, imageID []byte) *stream.Image {
	rec := &stream.Image{
		Source:         source,
		ManifestDigest: manifestDigest,
		ConfigDigest:   configDigest,
		Manifest:       string(manifest),
		Config:         string(config),
		Stores:         stream.Stores{Composefs: &stream.ComposefsStore{Repo: repo.Path(), Tag: tag}},
	}
	if imageID != nil {
		rec.Stores.Composefs.Image = hex.EncodeToString(imageID)
	}
	for _, d := range diffIDs {
		rec.Layers = append(rec.Layers, stream.Layer{DiffID: d})
	}
	return rec
}

// SourceRecord is the image record of a pull from src.
func SourceRecord(src *Source, res *Result, repo *composefs.Repository) *stream.Image {
	rec := Record(src.Name, src.ManifestDigest, src.Manifest, src.ConfigDigest, src.Config, res.DiffIDs, repo, res.Tag, res.ImageID)
	for i := range rec.Layers {
		rec.Layers[i].Digest = src.Layers[i].Digest.String()
		rec.Layers[i].MediaType = src.Layers[i].MediaType
		rec.Layers[i].Size = src.Layers[i].Size
	}
	return rec
}

// FillLayerDigests copies each layer's blob digest, media type and size
// from the stored manifest into the image record.
func FillLayerDigests(rec *stream.Image, manifestBytes []byte) error {
	m, err := manifest.FromBlob(manifestBytes, manifest.GuessMIMEType(manifestBytes))
	if err != nil {
		return fmt.Errorf("stored manifest %s: %w", rec.ManifestDigest, err)
	}
	layers := m.LayerInfos()
	if len(layers) != len(rec.Layers) {
		return fmt.Errorf("stored manifest %s lists %d layers, its config %d", rec.ManifestDigest, len(layers), len(rec.Layers))
	}
	for i, l := range layers {
		rec.Layers[i].Digest = l.Digest.String()
		rec.Layers[i].MediaType = l.MediaType
		rec.Layers[i].Size = l.Size
	}
	return nil
}

// FromRepository rebuilds the image record and merged tree of an image
// already in repo, named by its tag or its manifest digest (sha256:…),
// without any network.
func FromRepository(repo *composefs.Repository, ref string) (*stream.Image, *fstree.Dir, error) {
	manifestDigest, tag := ref, ""
	if !strings.HasPrefix(ref, "sha256:") {
		d, err := repo.ResolveTag(ref)
		if err != nil {
			return nil, nil, err
		}
		manifestDigest, tag = d, ref
	}
	img, err := oci.OpenImage(repo, manifestDigest)
	if err != nil {
		return nil, nil, err
	}
	tree, _, err := oci.BuildTree(repo, img.DiffIDs)
	if err != nil {
		return nil, nil, err
	}
	rec := Record("", manifestDigest, img.Manifest, img.ConfigDigest, img.Config, img.DiffIDs, repo, tag, img.ImageID)
	if err := FillLayerDigests(rec, img.Manifest); err != nil {
		return nil, nil, err
	}
	return rec, tree, nil
}

// WriteList writes the object list of the image (record and merged tree,
// each file's src its object in repo) to w, end record last.
func WriteList(w io.Writer, rec *stream.Image, tree *fstree.Dir, repo *composefs.Repository) error {
	return WriteListTo(stream.NewWriter(w), rec, tree, repo)
}

// WriteListTo writes the object list to sw (a stream.Writer, or a
// stream.Pipe's writer for a consumer in the same process) and closes it.
func WriteListTo(sw stream.EntryWriter, rec *stream.Image, tree *fstree.Dir, repo *composefs.Repository) error {
	if err := sw.WriteImage(rec); err != nil {
		return err
	}
	src := func(l *fstree.Leaf) string { return repo.ObjectPath(l.Object) }
	if err := fstree.WriteEntries(sw, tree, src); err != nil {
		return err
	}
	return sw.Close()
}

// WriteListFile writes the object list to the file at path and makes it
// durable. The path may also be a device or a pipe (/dev/null,
// /dev/stdout), whose fsync fails with EINVAL: they have nothing to make
// durable, and that is not an error.
func WriteListFile(path string, rec *stream.Image, tree *fstree.Dir, repo *composefs.Repository) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := WriteList(f, rec, tree, repo); err != nil {
		return err
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return f.Close()
}

// Summary counts what a pull stored, for its report.
type Summary struct {
	Source         string `json:"source"`
	ManifestDigest string `json:"manifestDigest"`
	Image          string `json:"image"` // fs-verity digest of the composefs image (hex)
	// BootImage is the fs-verity digest of the boot image (hex), for
	// bootable images: the composefs= of a native host booting it.
	BootImage string `json:"bootImage,omitempty"`
	// BootNote says why a bootable-looking image has no boot image, or
	// that its sealed UKI names another one.
	BootNote       string `json:"bootNote,omitempty"`
	Tag            string `json:"tag"`
	LayersFetched  int    `json:"layersFetched"`
	LayersPresent  int    `json:"layersPresent"`
	ObjectsNew     int    `json:"objectsNew"`
	ObjectsPresent int    `json:"objectsPresent"`
	BytesNew       int64  `json:"bytesNew"`
	// ImpliedDirs counts parent directories that layers used without
	// listing them (created as 0755 root:root).
	ImpliedDirs int `json:"impliedDirs"`
}

// Summarize counts a pull's result.
func Summarize(name, manifestDigest string, res *Result) *Summary {
	s := &Summary{Source: name, ManifestDigest: manifestDigest, Image: hex.EncodeToString(res.ImageID), Tag: res.Tag,
		LayersPresent: res.Present, ImpliedDirs: res.Implied, BootNote: res.BootNote}
	if res.BootImageID != nil {
		s.BootImage = hex.EncodeToString(res.BootImageID)
	}
	for _, l := range res.Layers {
		if l.Members > 0 {
			s.LayersFetched++
		}
		s.ObjectsNew += l.ObjectsNew
		s.ObjectsPresent += l.ObjectsPresent
		s.BytesNew += l.BytesNew
	}
	return s
}
