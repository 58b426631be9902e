package clone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.podman.io/image/v5/docker/reference"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/splitstream"
	"github.com/cfs-project/cfs/lib/stream"
)

// CStorageOptions tune ToContainersStorage.
type CStorageOptions struct {
	// Policy is reflink.Always or reflink.Auto; 0 picks Always where the
	// store and the composefs repository can share extents, Auto elsewhere.
	Policy reflink.Policy
	// Names for the image; nil means DefaultNames.
	Names []string
	// Repo is the composefs repository holding the layers; "" means the
	// one the list's image record names.
	Repo string
	// Verify reads and hashes everything even from a trusted repository:
	// each body for its CRC64 and each layer for its diff ID (see
	// trustedLayers).
	Verify bool
}

// CStorageSummary counts what ToContainersStorage did.
type CStorageSummary struct {
	ImageID        string   `json:"imageID"`
	Names          []string `json:"names"`
	ImageCreated   bool     `json:"imageCreated"`
	LayersWritten  int      `json:"layersWritten"`
	LayersPresent  int      `json:"layersPresent"`
	Reflinked      int64    `json:"reflinked"`
	ReflinkedBytes int64    `json:"reflinkedBytes"`
	Copied         int64    `json:"copied"`
	CopiedBytes    int64    `json:"copiedBytes"`
	Unread         int64    `json:"unread"`
	Trusted        bool     `json:"trusted"`
	Entries        int64    `json:"entries"`
	Policy         string   `json:"reflink"`
	Root           string   `json:"root"`
}

// String is the one-line summary cfs-clone prints on stderr.
func (s *CStorageSummary) String() string {
	what := "already recorded"
	if s.ImageCreated {
		what = "recorded"
	}
	check := "layers hashed, bodies read"
	if s.Trusted {
		check = fmt.Sprintf("diff IDs trusted, %d bodies not read (CRC64 recorded)", s.Unread)
	}
	return fmt.Sprintf("image %s %s as %s; layers written %d, already present %d; files reflinked %d (%d bytes), copied %d (%d bytes); %s; %d entries, reflink=%s, containers-storage %s",
		s.ImageID, what, strings.Join(s.Names, ", "), s.LayersWritten, s.LayersPresent, s.Reflinked, s.ReflinkedBytes, s.Copied, s.CopiedBytes, check, s.Entries, s.Policy, s.Root)
}

// ToContainersStorage writes the image an object list describes into a
// containers-storage store, from the layer splitstreams of the composefs
// repository: no registry, no compression, and where reflinks work no
// file data written (every body over 64 bytes is cloned from its object).
// The list goes to out with stores.containersStorage added. Each written
// layer is checked to give back its diff ID through Store.Diff
// (cstorage.Store.WriteLayers); only after that, and after the input's
// end record checked out, is the image recorded, and only then is the
// end record written.
func ToContainersStorage(ctx context.Context, store *cstorage.Store, in io.Reader, out io.Writer, opts CStorageOptions) (*CStorageSummary, error) {
	sum := &CStorageSummary{Root: store.GraphRoot()}
	r := stream.NewReader(in)
	img, err := r.Image()
	if err != nil {
		return sum, err
	}
	repoPath := opts.Repo
	if repoPath == "" && img.Stores.Composefs != nil {
		repoPath = img.Stores.Composefs.Repo
	}
	if repoPath == "" {
		return sum, fmt.Errorf("object list line 1: %w", ErrNoComposefsRepo)
	}
	repo, err := composefs.Open(repoPath)
	if err != nil {
		return sum, err
	}
	defer repo.Close()
	cfg, err := bootcconv.ParseConfig([]byte(img.Config))
	if err != nil {
		return sum, fmt.Errorf("object list line 1: %w", err)
	}
	if _, err := cfg.DiffIDs(); err != nil {
		return sum, fmt.Errorf("object list line 1: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(img.Layers) {
		return sum, fmt.Errorf("object list line 1: the config lists %d diff IDs, the record %d layers", len(cfg.RootFS.DiffIDs), len(img.Layers))
	}
	for i, l := range img.Layers {
		if l.DiffID != cfg.RootFS.DiffIDs[i] {
			return sum, fmt.Errorf("object list line 1: layer %d has diffID %s, the config says %s", i, l.DiffID, cfg.RootFS.DiffIDs[i])
		}
	}
	if opts.Policy == 0 {
		opts.Policy = reflink.Always
		if preflightCStorage(store, repo) != nil {
			opts.Policy = reflink.Auto
		}
	} else if opts.Policy == reflink.Always {
		if err := preflightCStorage(store, repo); err != nil {
			return sum, err
		}
	}
	if opts.Policy != reflink.Always && opts.Policy != reflink.Auto {
		return sum, fmt.Errorf("reflink policy %s: want always or auto", opts.Policy)
	}
	sum.Policy = opts.Policy.String()
	names := opts.Names
	if names == nil {
		names = DefaultNames(img)
	}
	sum.Names = names
	n := &cstorage.NewImage{
		Manifest: []byte(img.Manifest), Config: []byte(img.Config), DiffIDs: cfg.RootFS.DiffIDs, Names: names, Policy: opts.Policy,
		Layer: func(i int) (cstorage.ChunkReader, error) { return openLayerChunks(repo, cfg.RootFS.DiffIDs[i]) },
	}
	if !opts.Verify && trustedLayers(repo) {
		sum.Trusted = true
		n.TrustDiffIDs, n.BodyCRC = true, recordedCRC
	}
	sum.ImageID = n.ImageID()
	if "sha256:"+sum.ImageID != img.ConfigDigest {
		return sum, fmt.Errorf("object list line 1: config bytes have digest sha256:%s, the record says %s", sum.ImageID, img.ConfigDigest)
	}
	// The list's entries pass through while the layers are written: the
	// end record, which makes the output a complete list, comes only
	// after the image is recorded.
	rec := *img
	rec.Stores.ContainersStorage = &stream.ContainersStorageStore{Root: store.GraphRoot(), RunRoot: store.RunRoot(), ImageID: sum.ImageID}
	gate := &gatedWriter{w: out}
	w := stream.NewWriter(gate)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	passed := make(chan error, 1)
	var entries int64
	go func() {
		passed <- func() error {
			if err := w.WriteImage(&rec); err != nil {
				return err
			}
			for {
				if err := pctx.Err(); err != nil {
					return err
				}
				e, err := r.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				entries++
				if err := w.WriteEntry(e); err != nil {
					return err
				}
			}
		}()
	}()
	top, ws, err := store.WriteLayers(n)
	sum.LayersWritten, sum.LayersPresent = ws.LayersWritten, ws.LayersPresent
	sum.Reflinked, sum.ReflinkedBytes, sum.Copied, sum.CopiedBytes = ws.Cloned, ws.ClonedBytes, ws.Copied, ws.CopiedBytes
	sum.Unread = ws.Unread
	if err != nil {
		// The pass-through may be waiting for its input: it is not waited
		// for, but it writes nothing once we return.
		cancel()
		gate.shut()
		dropLayers(store, ws.Written)
		return sum, err
	}
	err = func() error {
		err := <-passed
		sum.Entries = entries
		if err != nil {
			return err
		}
		created, _ := cfg.CreatedTime()
		if sum.ImageCreated, err = store.RecordImage(n, top, created); err != nil {
			return err
		}
		return w.Close()
	}()
	if err != nil && !sum.ImageCreated {
		dropLayers(store, ws.Written)
	}
	return sum, err
}

// gatedWriter passes writes on until shut, and refuses them after.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errors.New("the export failed")
	}
	return g.w.Write(p)
}

func (g *gatedWriter) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// dropLayers removes layers this run wrote for an image it did not record,
// top first, so that a failed run leaves the store as it found it.
func dropLayers(store *cstorage.Store, ids []string) {
	for i := len(ids) - 1; i >= 0; i-- {
		store.Storage().DeleteLayer(ids[i])
	}
}

// trustedLayers says whether the layers of repo may be taken as what their
// names say, as cfs-clone --to ostree takes the objects of a trusted
// repository (trustedRepository: absolute, a real directory of ours
// that no one else may write). cfs-pull named each layer stream by the
// diff ID it computed from the tar it stored, each object by the
// fs-verity digest of its bytes, and recorded each new body's CRC-64/ISO
// in the pass that gave that digest; anyone who could change them since
// could as well change the store we write into. The export then neither
// hashes the tar again nor reads the bodies whose CRC64 is recorded: it
// clones them and writes the recorded CRC64 into tar-split.
func trustedLayers(repo *composefs.Repository) bool {
	path, err := filepath.Abs(repo.Path())
	if err != nil {
		return false
	}
	return trustedRepository(&stream.Image{Stores: stream.Stores{Composefs: &stream.ComposefsStore{Repo: path}}}) != ""
}

// recordedCRC is the CRC-64/ISO cfs-pull recorded with an object of a
// trusted repository (composefs.ObjectRecords), if any.
func recordedCRC(f *os.File) (uint64, bool) {
	crc, ok, err := composefs.ReadCRC64(f)
	return crc, ok && err == nil
}

// ErrNoComposefsRepo: the image record names no composefs repository to
// clone from, and the options give none.
var ErrNoComposefsRepo = errors.New("the image record names no composefs repository (stores.composefs.repo)")

// preflightCStorage refuses the Always policy where nothing can be shared:
// a store on a filesystem without FICLONE, or on another filesystem than
// the composefs repository.
func preflightCStorage(store *cstorage.Store, repo *composefs.Repository) error {
	ok, err := reflink.Supported(store.GraphRoot())
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the filesystem of %s does not support reflinks (%w)", store.GraphRoot(), reflink.ErrRefused)
	}
	var a, b unix.Stat_t
	if err := unix.Stat(store.GraphRoot(), &a); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Join(repo.Path(), "objects"), &b); err != nil {
		return err
	}
	if a.Dev != b.Dev {
		return fmt.Errorf("composefs repository %s and containers-storage %s are on different filesystems, which cannot share extents (%w)", repo.Path(), store.GraphRoot(), reflink.ErrRefused)
	}
	return nil
}

// DefaultNames is the name podman gives the image after pulling it from
// where the list says it came from: the normalised reference of a
// docker:// or containers-storage: source. Otherwise (a list from
// --from-repo, an oci: layout) it is bootc's name for an image restored
// from composefs, localhost/bootc-recovered:<config digest, 12 hex>.
func DefaultNames(img *stream.Image) []string {
	src := img.Source
	var ref string
	switch {
	case strings.HasPrefix(src, "docker://"):
		ref = strings.TrimPrefix(src, "docker://")
	case strings.HasPrefix(src, "containers-storage:"):
		if r, err := cstorage.ParseReference(strings.TrimPrefix(src, "containers-storage:")); err == nil {
			ref = r.Image
		}
	}
	if ref != "" {
		if named, err := reference.ParseNormalizedNamed(ref); err == nil {
			if _, digested := named.(reference.Digested); !digested {
				return []string{reference.TagNameOnly(named).String()}
			}
		}
	}
	return []string{"localhost/bootc-recovered:" + strings.TrimPrefix(img.ConfigDigest, "sha256:")[:12]}
}

// layerChunks reads a layer splitstream as cstorage chunks, each object
// opened as the file to clone from.
type layerChunks struct {
	repo *composefs.Repository
	sr   *splitstream.Reader
}

func openLayerChunks(repo *composefs.Repository, diffID string) (*layerChunks, error) {
	sr, _, err := repo.OpenStream(composefs.LayerContentID(diffID), splitstream.ContentOCILayer)
	if err != nil {
		return nil, fmt.Errorf("composefs repository %s: layer %s: %w", repo.Path(), diffID, err)
	}
	return &layerChunks{repo: repo, sr: sr}, nil
}

func (l *layerChunks) Next() (cstorage.Chunk, error) {
	c, err := l.sr.Next()
	if err != nil {
		return cstorage.Chunk{}, err
	}
	if c.External == nil {
		return cstorage.Chunk{Inline: c.Inline}, nil
	}
	f, err := l.repo.OpenObject(c.External)
	if err != nil {
		return cstorage.Chunk{}, fmt.Errorf("composefs object %x: %w", c.External, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return cstorage.Chunk{}, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return cstorage.Chunk{}, fmt.Errorf("composefs object %s is not a regular file", f.Name())
	}
	return cstorage.Chunk{File: f, Size: st.Size()}, nil
}

func (l *layerChunks) Close() error {
	l.sr.Close()
	return nil
}
