package pull

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// TestStalledRegistry: a registry that stops sending, in a blob or before
// the manifest, ends the pull after the low-speed time with a StallError
// naming what stalled, and nothing is tagged.
func TestStalledRegistry(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	big := img.Layers[0]
	for _, l := range img.Layers {
		if l.Size > big.Size {
			big = l
		}
	}
	rule := LowSpeed{Limit: 1024, Time: 500 * time.Millisecond}
	for name, c := range map[string]struct {
		fault testregistry.Fault
		what  string
	}{
		"mid-blob":      {testregistry.Fault{Kind: testregistry.Stall, Target: big.Digest, Offset: big.Size / 2}, "blob " + big.Digest.String()},
		"before a blob": {testregistry.Fault{Kind: testregistry.Stall, Target: big.Digest}, "blob " + big.Digest.String()},
		"manifest":      {testregistry.Fault{Kind: testregistry.Stall, Target: "1"}, "manifest"},
	} {
		t.Run(name, func(t *testing.T) {
			reg := testregistry.New(t)
			ref := reg.Push(t, "os", "1", img)
			reg.Inject(c.fault)
			repo, err := composefs.Create(filepath.Join(t.TempDir(), "repo"), fsverity.SHA512)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
			policy, err := PolicyContext(sys, true)
			if err != nil {
				t.Fatal(err)
			}
			defer policy.Destroy()
			start := time.Now()
			ctx := context.Background()
			src, err := Open(ctx, ref, sys, policy, WithLowSpeed(rule))
			if err == nil {
				defer src.Close()
				_, err = ToComposefs(ctx, repo, src, Options{})
			}
			took := time.Since(start)
			var stall *StallError
			if !errors.As(err, &stall) || stall.What != c.what || !strings.Contains(err.Error(), "stalled: under 1024 bytes/s for 500ms") {
				t.Fatalf("after %v: %v, want a stall of %s", took, err, c.what)
			}
			if took < rule.Time || took > 20*rule.Time {
				t.Errorf("the stall was noticed after %v, the rule says %v", took, rule.Time)
			}
			if tags, _ := repo.Tags(); len(tags) != 0 {
				t.Errorf("tagged %v", tags)
			}
			t.Logf("%v: %v", took, err)
		})
	}
}

// TestSlowIsNotStalled: a transfer above the limit, and time spent not
// reading (the consumer busy), do not count as a stall.
func TestSlowIsNotStalled(t *testing.T) {
	rule := LowSpeed{Limit: 100, Time: 200 * time.Millisecond}
	_, wd := watch(context.Background(), rule, "test")
	defer wd.done()
	for i := 0; i < 10; i++ {
		wd.wait()
		time.Sleep(20 * time.Millisecond) // 50 bytes per 20ms: 2500 bytes/s
		if err := wd.got(50); err != nil {
			t.Fatalf("a transfer at 2500 bytes/s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // busy elsewhere: not waiting
	}
	wd.wait()
	time.Sleep(3 * rule.Time)
	if err := wd.got(0); err == nil {
		t.Error("nothing for three times the low-speed time was not a stall")
	}
}
