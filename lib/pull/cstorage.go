package pull

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/reflink"
)

// CStorageOptions tune FromContainersStorage.
type CStorageOptions struct {
	Tag string // "" = localhost/bootc-<manifest digest>
	// Policy is reflink.Always (every body must share its extents with
	// the store's file; bootc's "enabled") or reflink.Auto (copy where
	// that is refused, and take layers without tar-split through
	// Store.Diff; "enabled-with-copy").
	Policy   reflink.Policy
	Jobs     int // layers imported at once; 0 = 2
	Progress func(Event)
}

// CStorageStats counts what an import from containers-storage did.
type CStorageStats struct {
	Reflinked, ReflinkedBytes int64 // objects whose extents are shared with the store's files
	Copied, CopiedBytes       int64 // objects whose bytes were copied
	Present, PresentBytes     int64 // objects the repository already had
	LayersPresent             int   // layers whose stream was already in the repository
	LayersDiffed              int   // layers without tar-split, read through Store.Diff (a copy)
}

// FromContainersStorage imports img from store into repo without
// decompressing or copying: each layer's splitstream is built from the
// layer's tar-split, and every body over 64 bytes is cloned from the
// layer's diff directory into objects/. The clone is read once, for its
// fs-verity digest, the CRC64 tar-split recorded and the layer's sha256,
// which must equal the diff ID before the layer's stream is named. The
// rest (tree, EROFS image, streams, tag) is exactly a registry pull's.
func FromContainersStorage(ctx context.Context, repo *composefs.Repository, store *cstorage.Store, img *cstorage.Image, name string, opts CStorageOptions) (*Result, *CStorageStats, error) {
	if opts.Policy != reflink.Always && opts.Policy != reflink.Auto {
		return nil, nil, fmt.Errorf("reflink policy %s: want always or auto", opts.Policy)
	}
	progress := func(ev Event) {
		if opts.Progress != nil {
			opts.Progress(ev)
		}
	}
	if _, err := bootcconv.ParseConfig(img.Config); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	res := &Result{DiffIDs: img.DiffIDs(), Layers: make([]oci.LayerStats, len(img.Layers)), logs: make([]*oci.MemberLog, len(img.Layers))}
	stats := &CStorageStats{}
	// As a registry pull: batches of objects are made durable and named
	// on another goroutine while the layers go on; done, on every return,
	// waits for the batch in flight.
	defer repo.FlushInBackground()()
	// Decide which layers need work, and refuse an impossible "always"
	// before anything is written.
	todo := make([]bool, len(img.Layers))
	for i, l := range img.Layers {
		have, err := oci.HaveLayer(repo, l.DiffID)
		if err != nil {
			return nil, nil, err
		}
		todo[i] = !have
		if !have && !l.TarSplit && opts.Policy == reflink.Always {
			return nil, nil, fmt.Errorf("%s: layer %s (%s) has no tar-split in the store, so its files cannot be shared (%w)", name, l.ID, l.DiffID, reflink.ErrRefused)
		}
	}
	if opts.Policy == reflink.Always {
		if err := preflightShare(repo, store); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	var (
		progressMu sync.Mutex
		mu         sync.Mutex
		firstErr   error
	)
	serial := func(ev Event) {
		progressMu.Lock()
		defer progressMu.Unlock()
		progress(ev)
	}
	// Two layers at a time, biggest first, as a registry pull does: the
	// work is hashing, and a host has more than one core.
	order := make([]int, len(img.Layers))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return img.Layers[order[a]].DiffSize > img.Layers[order[b]].DiffSize })
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 2
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for _, i := range order {
		l := img.Layers[i]
		if !todo[i] {
			stats.LayersPresent++
			res.Present++
			serial(Event{Kind: "layer-present", Layer: i, Layers: len(img.Layers), Digest: l.DiffID})
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if lctx.Err() != nil {
				return
			}
			serial(Event{Kind: "layer-start", Layer: i, Layers: len(img.Layers), Digest: l.DiffID, Bytes: l.DiffSize})
			onBytes := func(n int64) {
				serial(Event{Kind: "layer-bytes", Layer: i, Layers: len(img.Layers), Digest: l.DiffID, Bytes: l.DiffSize, Done: n})
			}
			var st oci.LayerStats
			var err error
			// The merged tree is built from the logs of the layers imported
			// here, without reading them back (finishImage).
			log := new(oci.MemberLog)
			if l.TarSplit {
				st, err = importClonedLayer(lctx, repo, store, img, i, opts.Policy, stats, onBytes, log)
			} else {
				st, err = importDiffedLayer(lctx, repo, store, l, stats, onBytes, log)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", name, err)
					cancel()
				}
				return
			}
			if !l.TarSplit {
				stats.LayersDiffed++
			}
			res.Layers[i], res.logs[i] = st, log
			serial(Event{Kind: "layer-done", Layer: i, Layers: len(img.Layers), Digest: l.DiffID, Bytes: st.TarBytes, Stats: st})
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := finishImage(repo, res, name, img.Manifest, img.ManifestDigest, img.Config, opts.Tag, progress); err != nil {
		return nil, nil, err
	}
	return res, stats, nil
}

// preflightShare refuses the Always policy where no file can be shared:
// a repository whose filesystem has no FICLONE, or a store on another
// filesystem.
func preflightShare(repo *composefs.Repository, store *cstorage.Store) error {
	objects := filepath.Join(repo.Path(), "objects")
	ok, err := reflink.Supported(objects)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the filesystem of %s does not support reflinks (%w)", repo.Path(), reflink.ErrRefused)
	}
	var a, b unix.Stat_t
	if err := unix.Stat(objects, &a); err != nil {
		return err
	}
	if err := unix.Stat(store.GraphRoot(), &b); err != nil {
		return err
	}
	if a.Dev != b.Dev {
		return fmt.Errorf("containers-storage %s and composefs repository %s are on different filesystems, which cannot share extents (%w)", store.GraphRoot(), repo.Path(), reflink.ErrRefused)
	}
	return nil
}

// importClonedLayer stores layer i from its tar-split and diff files.
func importClonedLayer(ctx context.Context, repo *composefs.Repository, store *cstorage.Store, img *cstorage.Image, i int, policy reflink.Policy, stats *CStorageStats, onBytes func(int64), log *oci.MemberLog) (oci.LayerStats, error) {
	l := img.Layers[i]
	lt, err := store.OpenLayer(img, i)
	if err != nil {
		return oci.LayerStats{}, err
	}
	defer lt.Close()
	// Workers clone the bodies ahead of the tar and read each clone once,
	// for its fs-verity digest and the CRC64 check; the tar reader then
	// reads it again, from the page cache, for the layer's sha256, which
	// must be taken in tar order. Errors of lt are about a member;
	// ImportLayerWith names it.
	lt.Prefetch(oci.InlineMax, prefetchWorkers(), prefetchAhead, cstorage.BodyPrep{
		Start: func(diff *os.File, size int64) (*os.File, io.Writer, any, error) {
			p, how, err := repo.CloneObject(diff, policy)
			if err != nil {
				return nil, nil, nil, err
			}
			h := fsverity.New(repo.Algorithm())
			return p.File(), h, &clonedBody{p: p, how: how, h: h, size: size}, nil
		},
		Verified: func(token any) error {
			cb := token.(*clonedBody)
			cb.id = cb.h.Sum(nil)
			var err error
			cb.created, err = cb.p.Commit(cb.id)
			if err != nil {
				return err
			}
			n := cb.size
			switch {
			case !cb.created:
				atomic.AddInt64(&stats.Present, 1)
				atomic.AddInt64(&stats.PresentBytes, n)
			case cb.how == reflink.Cloned:
				atomic.AddInt64(&stats.Reflinked, 1)
				atomic.AddInt64(&stats.ReflinkedBytes, n)
			default:
				atomic.AddInt64(&stats.Copied, 1)
				atomic.AddInt64(&stats.CopiedBytes, n)
			}
			return nil
		},
		Drop: func(token any) { token.(*clonedBody).p.Discard() },
	})
	buf := make([]byte, 256<<10)
	objects := func(m *oci.Member, body io.Reader) ([]byte, int64, bool, error) {
		token, err := lt.NextPrepared(m.Path, m.Size)
		if err != nil {
			return nil, 0, false, err
		}
		cb := token.(*clonedBody)
		// The object is stored; the tar still needs its bytes for the
		// layer's sha256. Not io.Discard: its ReadFrom would read in 8 KiB
		// pieces.
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, body, buf)
		if err != nil {
			return nil, n, false, err
		}
		id, created := cb.id, cb.created
		return id, n, created, nil
	}
	in := &countingReader{r: &ctxReader{ctx: ctx, r: lt}, report: onBytes}
	st, err := oci.ImportLayerLogged(repo, in, l.DiffID, objects, log)
	if err != nil {
		return st, fmt.Errorf("containers-storage layer %s: %w", l.ID, err)
	}
	return st, nil
}

// clonedBody is a body a prefetch worker cloned into the repository and
// hashed.
type clonedBody struct {
	p       *composefs.Pending
	how     reflink.Result
	h       *fsverity.Hasher
	size    int64
	id      []byte
	created bool
}

// prefetchAhead bounds how many tar-split entries a layer's prefetch runs
// ahead of its tar: each prefetched body holds a descriptor until taken.
const prefetchAhead = 256

// prefetchWorkers per layer: two per CPU, so that one waits for the disk
// while the other hashes.
func prefetchWorkers() int { return 2 * runtime.GOMAXPROCS(0) }

// importDiffedLayer takes a layer the store has no tar-split for through
// Store.Diff, uncompressed: a copy, allowed only under Auto. Its digest is
// checked like any other layer's, so a diff that is not the original tar
// fails here.
func importDiffedLayer(ctx context.Context, repo *composefs.Repository, store *cstorage.Store, l cstorage.Layer, stats *CStorageStats, onBytes func(int64), log *oci.MemberLog) (oci.LayerStats, error) {
	rc, err := store.Diff(l.ID)
	if err != nil {
		return oci.LayerStats{}, fmt.Errorf("containers-storage layer %s: %w", l.ID, err)
	}
	defer rc.Close()
	in := &countingReader{r: &ctxReader{ctx: ctx, r: rc}, report: onBytes}
	st, err := oci.ImportLayerLogged(repo, in, l.DiffID, nil, log)
	if err != nil {
		return st, fmt.Errorf("containers-storage layer %s (no tar-split, read through Store.Diff): %w", l.ID, err)
	}
	atomic.AddInt64(&stats.Copied, int64(st.ObjectsNew))
	atomic.AddInt64(&stats.CopiedBytes, st.BytesNew)
	atomic.AddInt64(&stats.Present, int64(st.ObjectsPresent))
	return st, nil
}

// DefaultCStoragePolicy is the policy when none is asked for: Always where
// the repository and the store can share extents, Auto elsewhere.
func DefaultCStoragePolicy(repo *composefs.Repository, store *cstorage.Store) reflink.Policy {
	if preflightShare(repo, store) == nil {
		return reflink.Always
	}
	return reflink.Auto
}
