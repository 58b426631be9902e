package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/bootimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/oci"
)

// Event is a progress report. Kind is "layer-start", "layer-bytes",
// "layer-done", "layer-present", "image" or "tag".
type Event struct {
	Kind     string
	Layer    int   // index in the manifest
	Done     int64 // compressed bytes read so far, for "layer-bytes"
	Layers   int
	Digest   string
	Bytes    int64 // compressed bytes, for layer events
	Stats    oci.LayerStats
	ImageHex string
}

// Options tune a pull into composefs.
type Options struct {
	Tag  string // "" = localhost/bootc-<manifest digest>
	Jobs int    // layers fetched at once; 0 = 2
	// Progress gets every event, never two at once (layers are fetched
	// in parallel, the calls are serialized).
	Progress func(Event)
	// Decompressor inflates gzip layers: DecompressDefault ("" too),
	// DecompressBuiltin, DecompressAuto, or the path of a program run as
	// `PROG -dc`.
	Decompressor string
}

// Result is what a pull stored.
type Result struct {
	Source  *Source
	DiffIDs []string
	ImageID []byte // fs-verity digest of the V1 EROFS image
	// Boot is the image's boot payload (nil when Detect refused the
	// image), BootImageID the fs-verity digest of its V1 boot image (nil
	// when it is not bootable), and BootNote says why a bootable-looking
	// image got no boot image, or that a sealed UKI names another one.
	// A pull never fails for these: the image is stored either way, and
	// installing or upgrading a native host refuses it with the same
	// words.
	Boot        *bootimage.Boot
	BootImageID []byte
	BootNote    string
	Tag         string
	Tree        *fstree.Dir
	Layers      []oci.LayerStats // zero for layers already present
	Present     int              // layers not fetched because they were stored
	Implied     int              // parent directories layers left implied
	ObjectsIn   int

	// logs[i] records the members of layer i when this pull imported it,
	// for finishImage to merge without reading the layer back; nil for
	// the others.
	logs []*oci.MemberLog
}

// blobAsFile lets an external inflater read a blob that is a regular
// file itself; a test turns it off to run the pipe path on oci: layouts.
var blobAsFile = true

// haveLayer is oci.HaveLayer; a test makes it fail while a layer is
// being written.
var haveLayer = oci.HaveLayer

// buildTree is oci.BuildCheckedTreeFrom; a test sees which logs it gets.
var buildTree = oci.BuildCheckedTreeFrom

// ToComposefs stores the image in the repository: layers not yet there
// (fetched, verified, decompressed and split in one pass each), the EROFS
// image of the merged tree, the config and manifest streams, and the tag,
// in that order, so that every name appears only after what it names.
func ToComposefs(ctx context.Context, repo *composefs.Repository, src *Source, opts Options) (*Result, error) {
	cfg, err := bootcconv.ParseConfig(src.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	diffIDs, err := cfg.DiffIDs()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	if len(diffIDs) != len(src.Layers) {
		return nil, fmt.Errorf("%s: the config lists %d diff IDs for %d layers", src.Name, len(diffIDs), len(src.Layers))
	}
	inflaterProg, err := ResolveDecompressor(opts.Decompressor)
	if err != nil {
		return nil, err
	}
	inflate := inflaterChoice{prog: inflaterProg, filesOnly: opts.Decompressor == "" || opts.Decompressor == DecompressDefault}
	res := &Result{Source: src, DiffIDs: diffIDs, Layers: make([]oci.LayerStats, len(src.Layers)), logs: make([]*oci.MemberLog, len(src.Layers))}
	// Objects are made durable and named by batches on another goroutine
	// while the layers go on; done, on every return, waits for the batch
	// in flight, so nothing writes into the repository after this returns.
	defer repo.FlushInBackground()()
	// Layers are fetched in parallel; the callback is called from one of
	// them at a time, so it needs no locking of its own.
	var progressMu sync.Mutex
	progress := func(ev Event) {
		if opts.Progress != nil {
			progressMu.Lock()
			defer progressMu.Unlock()
			opts.Progress(ev)
		}
	}

	// Biggest layers first, as composefs-rs does, so the last one to
	// finish is not the largest.
	order := make([]int, len(src.Layers))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return src.Layers[order[a]].Size > src.Layers[order[b]].Size })
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 2
	}
	// Every return below waits for the layer goroutines first: the caller
	// releases the repository lock when this returns, and nothing may be
	// written into the repository after that.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, i := range order {
		diffID, blob := res.DiffIDs[i], src.Layers[i]
		have, err := haveLayer(repo, diffID)
		if err != nil {
			cancel()
			g.Wait()
			return nil, err
		}
		if have {
			res.Present++
			progress(Event{Kind: "layer-present", Layer: i, Layers: len(src.Layers), Digest: diffID})
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			progress(Event{Kind: "layer-start", Layer: i, Layers: len(src.Layers), Digest: blob.Digest.String(), Bytes: blob.Size})
			onBytes := func(n int64) {
				progress(Event{Kind: "layer-bytes", Layer: i, Layers: len(src.Layers), Digest: blob.Digest.String(), Bytes: blob.Size, Done: n})
			}
			stats, log, err := fetchLayer(gctx, repo, src, blob, diffID, onBytes, inflate)
			if err != nil {
				return fmt.Errorf("%s: %w", src.Name, err)
			}
			res.Layers[i], res.logs[i] = stats, log // each goroutine its own element
			progress(Event{Kind: "layer-done", Layer: i, Layers: len(src.Layers), Digest: blob.Digest.String(), Bytes: blob.Size, Stats: stats})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if err := finishImage(repo, res, src.Name, src.Manifest, src.ManifestDigest, src.Config, opts.Tag, progress); err != nil {
		return nil, err
	}
	return res, nil
}

// finishImage does what follows the layers, for any source: the merged
// tree, the EROFS image, the config and manifest streams, and the tag,
// each named only after what it refers to.
func finishImage(repo *composefs.Repository, res *Result, name string, manifest []byte, manifestDigest string, config []byte, tag string, progress func(Event)) error {
	// Every layer was written by this pull or checked by HaveLayer; those
	// written come from their logs, the others from their streams.
	tree, merger, err := buildTree(repo, res.DiffIDs, res.logs)
	res.logs = nil // the tree holds what it needs of them
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	res.Tree, res.Implied = tree, merger.ImpliedDirs
	if res.ImageID, err = oci.WriteErofs(repo, tree); err != nil {
		return fmt.Errorf("%s: writing the EROFS image: %w", name, err)
	}
	progress(Event{Kind: "image", ImageHex: fmt.Sprintf("%x", res.ImageID)})
	if err := writeBootImage(repo, res); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := oci.StoreBootableImage(repo, manifest, config, res.DiffIDs, res.ImageID, res.BootImageID); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	res.Tag = tag
	if res.Tag == "" {
		res.Tag = bootcconv.DefaultTag(manifestDigest)
	}
	if err := repo.SetTag(res.Tag, manifestDigest); err != nil {
		return err
	}
	progress(Event{Kind: "tag"})
	return nil
}

// writeBootImage stores the boot image of a bootable image (one with a
// kernel or a UKI, as bootc detects them) beside its image, as bootc does
// when it pulls for a composefs-native host.
func writeBootImage(repo *composefs.Repository, res *Result) error {
	open := func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) }
	boot, err := bootimage.Detect(res.Tree, open)
	if err != nil {
		res.BootNote = "not bootable natively: " + err.Error()
		return nil
	}
	res.Boot = boot
	if boot.Kind == bootimage.None {
		return nil
	}
	id, _, err := bootimage.Write(repo, res.Tree)
	if errors.Is(err, bootimage.ErrNoBootDirs) {
		res.BootNote = "no boot image: " + err.Error()
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing the boot image: %w", err)
	}
	res.BootImageID = id
	if err := boot.CheckSealed(id); err != nil {
		res.BootNote = err.Error()
	}
	return nil
}

// fetchLayer streams one blob through digest verification and
// decompression into the repository. A gzip blob is inflated by
// inflaterProg when one is given; when that program cannot decide (see
// inflater), the blob is fetched again and inflated in process, which
// then has the last word.
func fetchLayer(ctx context.Context, repo *composefs.Repository, src *Source, blob types.BlobInfo, diffID string, onBytes func(int64), inflate inflaterChoice) (oci.LayerStats, *oci.MemberLog, error) {
	stats, log, refused, err := fetchLayerWith(ctx, repo, src, blob, diffID, onBytes, inflate)
	if refused == nil || ctx.Err() != nil {
		return stats, log, err
	}
	stats, log, _, err = fetchLayerWith(ctx, repo, src, blob, diffID, onBytes, inflaterChoice{})
	if err != nil {
		return stats, nil, fmt.Errorf("%w (before that, %v)", err, refused)
	}
	return stats, log, nil
}

// inflaterChoice is the external program that inflates gzip blobs (""
// for none) and whether it does only those that are regular files.
type inflaterChoice struct {
	prog      string
	filesOnly bool
}

// fetchLayerWith is one attempt of fetchLayer; refused is set when the
// external inflater left the decision to the in-process one. The log
// records the layer's members (complete only without error).
func fetchLayerWith(ctx context.Context, repo *composefs.Repository, src *Source, blob types.BlobInfo, diffID string, onBytes func(int64), inflate inflaterChoice) (stats oci.LayerStats, log *oci.MemberLog, refused, err error) {
	log = new(oci.MemberLog)
	stats, refused, err = fetchLayerInto(ctx, repo, src, blob, diffID, onBytes, inflate, log)
	if err != nil {
		log = nil
	}
	return stats, log, refused, err
}

func fetchLayerInto(ctx context.Context, repo *composefs.Repository, src *Source, blob types.BlobInfo, diffID string, onBytes func(int64), inflate inflaterChoice, log *oci.MemberLog) (stats oci.LayerStats, refused, err error) {
	blobReader, err := src.OpenBlob(ctx, blob)
	if err != nil {
		return stats, nil, fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	var closeOnce sync.Once
	closeBlob := func() error {
		err := io.ErrClosedPipe
		closeOnce.Do(func() { err = blobReader.Close() })
		return err
	}
	defer closeBlob()
	algo, decompress, stream, err := compression.DetectCompressionFormat(blobReader)
	if err != nil {
		return stats, nil, fmt.Errorf("layer %s: detecting compression: %w", blob.Digest, err)
	}
	var file *os.File
	if vb, ok := blobReader.(*verifiedBlob); ok && blobAsFile {
		file = vb.file()
	}
	if inflate.prog != "" && algo.Name() == compression.Gzip.Name() && (file != nil || !inflate.filesOnly) {
		// The feeder reads (and digests) the blob on a goroutine of its
		// own, beside the program and the tar. A blob in a file is read
		// by the program from that file; the feeder's read, which the
		// digest and the end checks rely on, is then its only other use.
		in, err := startInflater(inflate.prog, &countingReader{r: stream, report: onBytes}, file, func() { closeBlob() })
		if err != nil {
			return stats, nil, fmt.Errorf("layer %s: %w", blob.Digest, err)
		}
		stats, err = oci.ImportLayerLogged(repo, &ctxReader{ctx: ctx, r: in}, diffID, nil, log)
		in.Close()
		if err != nil {
			return stats, in.refused, fmt.Errorf("blob %s: %w", blob.Digest, err)
		}
		// The inflater read the blob to its end (its digest checked).
		return stats, nil, nil
	}
	// Read (and digested) on a goroutine of its own, beside the inflating.
	ahead := newReadAhead(readCloser{stream, closeBlob})
	defer ahead.Close()
	rc := &countingReader{r: ahead, report: onBytes}
	stream = rc
	var tarStream io.ReadCloser = io.NopCloser(stream)
	if decompress != nil {
		if tarStream, err = decompress(stream); err != nil {
			return stats, nil, fmt.Errorf("layer %s: initializing decompression: %w", blob.Digest, err)
		}
	}
	defer tarStream.Close()
	stats, err = oci.ImportLayerLogged(repo, &ctxReader{ctx: ctx, r: tarStream}, diffID, nil, log)
	if err != nil {
		return stats, nil, fmt.Errorf("blob %s: %w", blob.Digest, err)
	}
	// The compressed stream must be read to its end for its digest to be
	// checked; a decompressor may stop at the end of the data.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return stats, nil, fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	return stats, nil, nil
}

// readCloser is a reader closed by another function.
type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// countingReader reports how many bytes passed, every MiB or so.
type countingReader struct {
	r       io.Reader
	n, last int64
	report  func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 1<<20 || err == io.EOF {
		c.last = c.n
		c.report(c.n)
	}
	return n, err
}

// ctxReader stops a layer import when the pull is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
