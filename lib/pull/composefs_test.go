package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// TestProgressIsSerialized pulls a several-layer image two layers at a
// time with a callback that notices when it is entered twice at once, as
// cfs-pull's reporter (which keeps a map) must never be.
func TestProgressIsSerialized(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 7, Scale: 4})
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	repo, err := composefs.Create(filepath.Join(t.TempDir(), "repo"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	sys := &types.SystemContext{}
	policy, err := PolicyContext(sys, true)
	if err != nil {
		t.Fatal(err)
	}
	defer policy.Destroy()
	ctx := context.Background()
	src, err := Open(ctx, "oci:"+layout+":latest", sys, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	var inside, overlaps, events atomic.Int32
	progress := func(ev Event) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		events.Add(1)
		if ev.Kind == "layer-bytes" {
			time.Sleep(200 * time.Microsecond) // widen the window a second layer would hit
		}
		inside.Add(-1)
	}
	if _, err := ToComposefs(ctx, repo, src, Options{Jobs: 2, Progress: progress}); err != nil {
		t.Fatal(err)
	}
	if n := overlaps.Load(); n > 0 {
		t.Errorf("the progress callback ran concurrently %d times out of %d events", n, events.Load())
	}
	if events.Load() < 10 {
		t.Errorf("only %d progress events", events.Load())
	}
}

// slowBlobs delays the first read of one blob, so that a layer is
// provably being fetched when the pull fails elsewhere, and records when
// its reader is closed.
type slowBlobs struct {
	types.ImageSource
	digest  digest.Digest
	started chan struct{}
	closed  atomic.Int64 // UnixNano of Close
}

func (s *slowBlobs) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	rc, n, err := s.ImageSource.GetBlob(ctx, info, cache)
	if err != nil || info.Digest != s.digest {
		return rc, n, err
	}
	return &slowReader{rc: rc, s: s}, n, nil
}

type slowReader struct {
	rc   io.ReadCloser
	s    *slowBlobs
	once sync.Once
}

func (r *slowReader) Read(p []byte) (int, error) {
	r.once.Do(func() {
		close(r.s.started)
		time.Sleep(300 * time.Millisecond) // deaf to the context, as a network read can be
	})
	return r.rc.Read(p)
}

func (r *slowReader) Close() error {
	r.s.closed.Store(time.Now().UnixNano())
	return r.rc.Close()
}

// TestNoWriteAfterReturn fails the presence check of one layer while
// another is being fetched: ToComposefs must not return (and its caller
// release the repository lock) before that fetch has stopped.
func TestNoWriteAfterReturn(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 7, Scale: 4})
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(t.TempDir(), "repo")
	repo, err := composefs.Create(repoDir, fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	sys := &types.SystemContext{}
	policy, err := PolicyContext(sys, true)
	if err != nil {
		t.Fatal(err)
	}
	defer policy.Destroy()
	ctx := context.Background()
	src, err := Open(ctx, "oci:"+layout+":latest", sys, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if len(src.Layers) < 2 {
		t.Fatalf("the test image has %d layers, want two or more", len(src.Layers))
	}
	// The biggest layer is fetched first; the next one's check fails.
	big, next := 0, -1
	for i, l := range src.Layers {
		if l.Size > src.Layers[big].Size {
			big = i
		}
	}
	for i, l := range src.Layers {
		if i != big && (next < 0 || l.Size > src.Layers[next].Size) {
			next = i
		}
	}
	cfg, err := bootcconv.ParseConfig(src.Config)
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowBlobs{ImageSource: src.src, digest: src.Layers[big].Digest, started: make(chan struct{})}
	src.src = slow
	failing := errors.New("injected presence check failure")
	haveLayer = func(repo *composefs.Repository, diffID string) (bool, error) {
		if diffID != cfg.RootFS.DiffIDs[next] {
			return oci.HaveLayer(repo, diffID)
		}
		select {
		case <-slow.started:
		case <-time.After(10 * time.Second):
			t.Error("the biggest layer was never read")
		}
		return false, failing
	}
	defer func() { haveLayer = oci.HaveLayer }()

	_, err = ToComposefs(ctx, repo, src, Options{Jobs: 2})
	returned := time.Now().UnixNano()
	if !errors.Is(err, failing) {
		t.Fatalf("ToComposefs: %v, want the injected failure", err)
	}
	before := listTree(t, repoDir)
	time.Sleep(500 * time.Millisecond)
	if closed := slow.closed.Load(); closed == 0 || closed > returned {
		t.Errorf("the layer being fetched was still open when ToComposefs returned (closed %v after)", time.Duration(closed-returned))
	}
	if after := listTree(t, repoDir); after != before {
		t.Errorf("the repository changed after ToComposefs returned:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// listTree names every entry under dir with its size.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d\n", p, info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
