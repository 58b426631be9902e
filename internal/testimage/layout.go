package testimage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteOCILayout stores the image in the OCI image layout at dir (created
// if missing) under tag, so that "oci:DIR:TAG" names it. An existing layout
// keeps its other images and blobs, which lets tests put several releases
// in one layout; an image previously tagged tag is untagged.
func (img *Image) WriteOCILayout(dir, tag string) error {
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return err
	}
	layoutFile, err := json.Marshal(v1.ImageLayout{Version: v1.ImageLayoutVersion})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageLayoutFile), layoutFile, 0o644); err != nil {
		return err
	}

	descriptors := []v1.Descriptor{img.ManifestDescriptor(), {Digest: img.ConfigDigest, Size: int64(len(img.Config))}}
	for _, l := range img.Layers {
		descriptors = append(descriptors, l.Descriptor())
	}
	for _, d := range descriptors {
		if err := img.writeBlobFile(blobDir, d); err != nil {
			return err
		}
	}
	return updateIndex(filepath.Join(dir, "index.json"), img.ManifestDescriptor(), tag)
}

func (img *Image) writeBlobFile(blobDir string, d v1.Descriptor) error {
	final := filepath.Join(blobDir, d.Digest.Encoded())
	if fi, err := os.Stat(final); err == nil && fi.Size() == d.Size {
		return nil // content-addressed: same name, same bytes
	}
	r, _, err := img.OpenBlob(d.Digest)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.CreateTemp(blobDir, ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing blob %s: %w", d.Digest, err)
	}
	if n != d.Size {
		return fmt.Errorf("writing blob %s: %d bytes, descriptor says %d", d.Digest, n, d.Size)
	}
	// CreateTemp makes 0600 files; skopeo and podman run as other users
	// in rootless tests.
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), final)
}

func updateIndex(indexPath string, manifest v1.Descriptor, tag string) error {
	index := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
	}
	old, err := os.ReadFile(indexPath)
	switch {
	case err == nil:
		if err := json.Unmarshal(old, &index); err != nil {
			return fmt.Errorf("parsing %s: %w", indexPath, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	kept := index.Manifests[:0]
	for _, m := range index.Manifests {
		if m.Annotations[v1.AnnotationRefName] != tag {
			kept = append(kept, m)
		}
	}
	manifest.Annotations = map[string]string{v1.AnnotationRefName: tag}
	index.Manifests = append(kept, manifest)
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return os.WriteFile(indexPath, data, 0o644)
}

// BlobPath is where an OCI layout keeps a blob, for tests that damage one.
func BlobPath(layoutDir string, d digest.Digest) string {
	return filepath.Join(layoutDir, "blobs", d.Algorithm().String(), d.Encoded())
}
