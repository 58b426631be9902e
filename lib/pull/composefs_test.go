package pull

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
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
