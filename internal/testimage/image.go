// Package testimage generates deterministic OCI images that look like bootc
// OS images (kernel and initramfs under /usr/lib/modules, merged /usr, /etc,
// /var) and exercise everything an image unpacker can get wrong: whiteouts,
// opaque directories, hardlinks, xattrs, odd modes and owners, non-UTF-8
// names, type changes across layers. Each image comes with the filesystem it
// must unpack to (ExpectedTree), computed independently of any unpacker.
package testimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression chooses the layer media types.
type Compression int

const (
	// Mixed gives layer 0 gzip, layer 1 zstd and layer 2 no compression,
	// so one image covers the three OCI layer media types.
	Mixed Compression = iota
	Gzip
	Zstd
	Uncompressed
)

func (c Compression) mediaTypes() ([]string, error) {
	var one string
	switch c {
	case Mixed:
		return []string{v1.MediaTypeImageLayerGzip, v1.MediaTypeImageLayerZstd, v1.MediaTypeImageLayer}, nil
	case Gzip:
		one = v1.MediaTypeImageLayerGzip
	case Zstd:
		one = v1.MediaTypeImageLayerZstd
	case Uncompressed:
		one = v1.MediaTypeImageLayer
	default:
		return nil, fmt.Errorf("testimage: unknown compression %d", c)
	}
	return []string{one, one, one}, nil
}

// Options select one image. The zero value is a valid small image.
type Options struct {
	// Seed drives file contents, names in the large directory and, above
	// Scale 1, the bulk file sizes. The tree's structure does not depend
	// on it, so feature tests can name paths.
	Seed int64
	// Scale 0 or 1 is the unit-test image (about 750 paths, 10 MiB of
	// content, generated in well under a second); every step above adds
	// 100 files and about 3.3 MiB. See Large.
	Scale       int
	Compression Compression
	// Name and Version appear in os-release, the config labels and layer
	// 2 only: images that differ just in them share layers 0 and 1, like
	// two releases of one OS. Defaults: "cfs-test", "1.0".
	Name    string
	Version string
	// OSID is os-release's ID= in layer 2 (default "cfs").
	OSID string
	// UTF8Names leaves out the names that are not valid UTF-8, for trees
	// bound for stores that cannot hold them (ostree).
	UTF8Names bool
	// SELinux adds an SELinux policy (/etc/selinux, see
	// SELinuxFileContexts) to the base layer.
	SELinux bool
	// Files adds regular files (path without a leading slash → content,
	// mode 0644, parents created) to the top layer, in path order: the
	// configuration an image ships for its installer, e.g.
	// usr/lib/bootc/kargs.d/*.toml or usr/lib/bootc/install/*.toml.
	Files map[string]string
	// Bootable adds /boot (with a GRUB configuration) and /sysroot (with
	// ostree's directory) to the base layer. With the kernel and
	// initramfs every test image has, that makes an image composefs-rs
	// and bootc boot natively: the boot transform needs both directories
	// and empties them (lib/bootimage).
	Bootable bool
	// UKI, when set, is a unified kernel image put at UKIPath in a fourth
	// layer, as image builders add a sealed UKI last (see SealedUKI). It
	// implies Bootable.
	UKI []byte
	// UKIPath is where UKI goes; default DefaultUKIPath.
	UKIPath string
	// Sizes chooses the size mix and tree shape of the files Scale adds.
	Sizes Sizes
}

// Sizes is the size mix of the bulk files an image's Scale adds.
type Sizes int

const (
	// SizesDefault: 70% under 4 KiB, 0.5% of 1 to 6 MiB, about 33 KiB
	// per file on average, in directories of 64 files. Large uses it.
	SizesDefault Sizes = iota
	// SizesUsr follows a real Debian /usr: two thirds of the files at
	// most 4 KiB, 86% at most 16 KiB, a long tail up to 32 MiB that holds
	// most of the bytes, about 35 KiB per file; directories of a few
	// files grouped in packages, and some symlinks. See Scale100k.
	SizesUsr
)

// Scale100k is the large benchmark image: about 100,000 files (119,000
// entries with directories and symlinks) and 3.7 GB, sized like a real
// /usr, gzip layers, UTF-8 names so that ostree can hold it. Generate it
// once per machine with Cached rather than in each benchmark: every pass
// over it regenerates and compresses gigabytes.
func Scale100k(seed int64) Options {
	return Options{Seed: seed, Scale: 1000, Sizes: SizesUsr, Compression: Gzip, Name: "cfs-usr100k", UTF8Names: true}
}

// DefaultUKIPath is where Options.UKI lands unless UKIPath says otherwise:
// under /boot, which the boot transform empties, so the UKI can be
// sealed for the boot image of the very image that carries it.
const DefaultUKIPath = "boot/EFI/Linux/cfs-test.efi"

// LargeScale is the Scale of Large.
const LargeScale = 300

// Large is the benchmark image: about 30,000 files and 1 GiB. Blobs are
// regenerated on demand instead of kept, so memory stays small, but every
// pass over it (Generate itself, each WriteOCILayout or push) costs tens of
// seconds.
func Large(seed int64) (*Image, error) {
	return Generate(Options{Seed: seed, Scale: LargeScale, Name: "cfs-large"})
}

// Layer is one layer blob of an Image.
type Layer struct {
	MediaType string
	Digest    digest.Digest // of the blob as stored (compressed)
	Size      int64
	DiffID    digest.Digest // of the uncompressed tar
	DiffSize  int64

	spec *layerSpec
	// blob caches small layers; nil means regenerate on each Open.
	blob []byte
}

// maxCachedBlob bounds the blobs kept in memory: the unit-test image's all
// are, the benchmark image's are regenerated.
const maxCachedBlob = 64 * MiB

// Descriptor returns the layer's manifest descriptor.
func (l *Layer) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
}

// Open returns the blob as stored in a registry or OCI layout. A
// regenerated blob is checked against Digest as it streams, so a reader
// never silently returns different bytes.
func (l *Layer) Open() io.ReadCloser {
	if l.blob != nil {
		return io.NopCloser(bytes.NewReader(l.blob))
	}
	pr, pw := io.Pipe()
	go func() {
		h := sha256.New()
		err := writeBlob(io.MultiWriter(pw, h), io.Discard, l.spec)
		if err == nil && digest.NewDigest(digest.SHA256, h) != l.Digest {
			err = fmt.Errorf("testimage: regenerated layer does not match %s; generation is not deterministic", l.Digest)
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// OpenTar returns the layer's uncompressed tar, whose sha256 is DiffID.
func (l *Layer) OpenTar() io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, l.spec.members)) }()
	return pr
}

// Image is a generated image: its blobs, descriptors and expected tree.
type Image struct {
	Options        Options // with defaults filled in
	Layers         []*Layer
	Config         []byte
	ConfigDigest   digest.Digest
	Manifest       []byte
	ManifestDigest digest.Digest
	DiffIDs        []digest.Digest

	tree Tree
}

// Generate builds an image. The same Options always give the same bytes
// within one build of the module (checked by the tests through the
// manifest digest). Across toolchain or klauspost/compress upgrades the
// compressed blobs, and so the manifest digest, may change; tests should
// compare against the Image's own digests, never hard-coded ones.
func Generate(opts Options) (*Image, error) {
	opts, b, err := describe(opts)
	if err != nil {
		return nil, err
	}
	return generate(opts, b, "")
}

// describe fills in the defaults and lays out the members of every layer,
// without serializing anything.
func describe(opts Options) (Options, *builder, error) {
	if opts.Scale < 1 {
		opts.Scale = 1
	}
	if opts.Name == "" {
		opts.Name = "cfs-test"
	}
	if opts.Version == "" {
		opts.Version = "1.0"
	}
	if opts.UKI != nil {
		opts.Bootable = true
		if opts.UKIPath == "" {
			opts.UKIPath = DefaultUKIPath
		}
	}
	mediaTypes, err := opts.Compression.mediaTypes()
	if err != nil {
		return opts, nil, err
	}
	return opts, buildLayers(opts, mediaTypes), nil
}

// generate serializes the layers. With blobDir set, each blob is also
// written there under its digest during that one serialization, which
// spares a cached image's layout a second pass over its gigabytes.
func generate(opts Options, b *builder, blobDir string) (*Image, error) {
	img := &Image{Options: opts, Layers: make([]*Layer, len(b.layers))}
	// Layers serialize in parallel: no content is shared between layers,
	// so each goroutine fills in digests of its own contents only.
	errs := make([]error, len(b.layers))
	var wg sync.WaitGroup
	for i, spec := range b.layers {
		wg.Go(func() { img.Layers[i], errs[i] = serializeLayer(spec, blobDir) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, l := range img.Layers {
		img.DiffIDs = append(img.DiffIDs, l.DiffID)
	}
	// Content digests are complete only now that every layer was written.
	img.tree = b.applier.finish()

	if err := img.makeConfigAndManifest(b); err != nil {
		return nil, err
	}
	return img, nil
}

func serializeLayer(spec *layerSpec, blobDir string) (*Layer, error) {
	blobHash, diffHash := sha256.New(), sha256.New()
	blob, diff := &countingWriter{w: blobHash}, &countingWriter{w: diffHash}
	cache := &cappedBuffer{limit: maxCachedBlob}
	sink := io.MultiWriter(blob, cache)
	var file *os.File
	if blobDir != "" {
		var err error
		if file, err = os.CreateTemp(blobDir, ".tmp-"); err != nil {
			return nil, err
		}
		defer os.Remove(file.Name()) // no-op after the rename
		defer file.Close()
		sink = io.MultiWriter(blob, cache, file)
	}
	if err := writeBlob(sink, diff, spec); err != nil {
		return nil, err
	}
	l := &Layer{
		MediaType: spec.mediaType,
		Digest:    digest.NewDigest(digest.SHA256, blobHash),
		Size:      blob.n,
		DiffID:    digest.NewDigest(digest.SHA256, diffHash),
		DiffSize:  diff.n,
		spec:      spec,
	}
	if !cache.overflow {
		l.blob = cache.buf.Bytes()
	}
	if file != nil {
		if err := file.Chmod(0o644); err != nil {
			return nil, err
		}
		if err := file.Close(); err != nil {
			return nil, err
		}
		if err := os.Rename(file.Name(), filepath.Join(blobDir, l.Digest.Encoded())); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (img *Image) makeConfigAndManifest(b *builder) error {
	created := baseTime.Add(49 * time.Hour)
	config := v1.Image{
		Created:  &created,
		Author:   "cfs testimage",
		Platform: v1.Platform{Architecture: "amd64", OS: "linux"},
		Config: v1.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"},
			Cmd:        []string{"/sbin/init"},
			StopSignal: "SIGRTMIN+3",
			Labels: map[string]string{
				"containers.bootc":                 "1",
				"ostree.bootable":                  "true",
				"org.opencontainers.image.title":   img.Options.Name,
				"org.opencontainers.image.version": img.Options.Version,
			},
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: img.DiffIDs},
	}
	for i, spec := range b.layers {
		t := baseTime.Add(time.Duration(i) * 24 * time.Hour)
		config.History = append(config.History, v1.History{Created: &t, CreatedBy: spec.createdBy})
	}
	var err error
	if img.Config, err = json.Marshal(config); err != nil {
		return err
	}
	img.ConfigDigest = digest.FromBytes(img.Config)

	manifest := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: img.ConfigDigest, Size: int64(len(img.Config))},
	}
	for _, l := range img.Layers {
		manifest.Layers = append(manifest.Layers, l.Descriptor())
	}
	if img.Manifest, err = json.Marshal(manifest); err != nil {
		return err
	}
	img.ManifestDigest = digest.FromBytes(img.Manifest)
	return nil
}

// ManifestDescriptor describes the manifest, as an index or a registry
// references it.
func (img *Image) ManifestDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: img.ManifestDigest, Size: int64(len(img.Manifest))}
}

// ExpectedTree returns the filesystem the image unpacks to, a fresh copy on
// each call.
func (img *Image) ExpectedTree() Tree {
	return img.tree.clone()
}

// ExpectedTreeOfLayers returns the filesystem made by the bottom n layers
// alone, which is what a layer-by-layer store such as containers-storage's
// vfs driver holds for layer n-1.
func (img *Image) ExpectedTreeOfLayers(n int) Tree {
	if n < 0 || n > len(img.Layers) {
		panic(fmt.Sprintf("testimage: ExpectedTreeOfLayers(%d) on an image with %d layers", n, len(img.Layers)))
	}
	if n == len(img.Layers) {
		return img.ExpectedTree()
	}
	a := newApplier()
	for i, l := range img.Layers[:n] {
		a.startLayer(i)
		for _, m := range l.spec.members {
			a.apply(m)
		}
	}
	return a.finish()
}

// OpenBlob returns any blob of the image (config, manifest or layer) by
// digest, with its size.
func (img *Image) OpenBlob(d digest.Digest) (io.ReadCloser, int64, error) {
	switch d {
	case img.ManifestDigest:
		return io.NopCloser(bytes.NewReader(img.Manifest)), int64(len(img.Manifest)), nil
	case img.ConfigDigest:
		return io.NopCloser(bytes.NewReader(img.Config)), int64(len(img.Config)), nil
	}
	for _, l := range img.Layers {
		if l.Digest == d {
			return l.Open(), l.Size, nil
		}
	}
	return nil, 0, fmt.Errorf("testimage: no blob %s in image %s", d, img.ManifestDigest)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// cappedBuffer keeps what is written until it exceeds limit, then drops it
// all and only swallows further writes.
type cappedBuffer struct {
	buf      bytes.Buffer
	limit    int
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if !c.overflow {
		if c.buf.Len()+len(p) > c.limit {
			c.overflow = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}
