package testregistry

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

var smallImage = sync.OnceValues(func() (*testimage.Image, error) { return testimage.Generate(testimage.Options{Seed: 1}) })

func mustSmallImage(t *testing.T) *testimage.Image {
	t.Helper()
	img, err := smallImage()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pull copies ref into a fresh oci: layout with c/image, as cfs-pull's
// reference implementation would, and returns the layout directory.
func pull(t *testing.T, ref string) (string, error) {
	t.Helper()
	src, err := alltransports.ParseImageName(ref)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst, err := alltransports.ParseImageName("oci:" + dir + ":pulled")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = policy.Destroy() }()
	sys := &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, // plain HTTP
		BlobInfoCacheDir:            t.TempDir(),
		// Without this c/image gzips uncompressed layers on the way into
		// an oci: layout, and the manifest digest changes.
		OCIAcceptUncompressedLayers: true,
	}
	_, err = copy.Image(context.Background(), policy, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys})
	return dir, err
}

func pulledManifest(t *testing.T, layout string) digest.Digest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index v1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %s", data)
	}
	return index.Manifests[0].Digest
}

func TestPushThenPull(t *testing.T) {
	reg := New(t)
	img := mustSmallImage(t)
	if host, _, err := net.SplitHostPort(reg.Host); err != nil || host != "127.0.0.1" {
		t.Fatalf("registry listens on %q, want 127.0.0.1", reg.Host)
	}
	ref := reg.Push(t, "cfs/test", "latest", img)
	if ref != "docker://"+reg.Host+"/cfs/test:latest" {
		t.Errorf("Push returned %q", ref)
	}
	start := time.Now()
	layout, err := pull(t, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled in %v", time.Since(start))
	if got := pulledManifest(t, layout); got != img.ManifestDigest {
		t.Errorf("pulled manifest %s, pushed %s", got, img.ManifestDigest)
	}
	for _, l := range img.Layers {
		if reg.Gets(l.Digest) != 1 {
			t.Errorf("layer %s fetched %d times, want once", l.Digest, reg.Gets(l.Digest))
		}
	}

	// A second release shares two layers; Push skips what is there.
	v2, err := testimage.Generate(testimage.Options{Seed: 1, Version: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	layout, err = pull(t, reg.Push(t, "cfs/test", "v2", v2))
	if err != nil {
		t.Fatal(err)
	}
	if got := pulledManifest(t, layout); got != v2.ManifestDigest {
		t.Errorf("pulled manifest %s, pushed %s", got, v2.ManifestDigest)
	}
}

func TestFaultsFailThePull(t *testing.T) {
	img := mustSmallImage(t)
	big := img.Layers[0] // several MiB: cuts land mid-body
	for _, tc := range []struct {
		name    string
		fault   Fault
		wantErr string
	}{
		{"status 500 on a layer", Fault{Kind: StatusError, Target: img.Layers[1].Digest}, "500"},
		{"status 503 on the manifest", Fault{Kind: StatusError, Target: "latest", Status: 503}, "503"},
		// Always cut at the same blob offset: c/image reconnects once with
		// a Range request, is cut again without progress, and gives up.
		{"connection cut mid-blob", Fault{Kind: CutConnection, Target: big.Digest, Offset: big.Size / 2}, "EOF"},
		{"connection cut before the body", Fault{Kind: CutConnection, Target: big.Digest}, "EOF"},
		{"corrupted byte", Fault{Kind: CorruptByte, Target: big.Digest, Offset: 1000}, "Digest did not match"},
		{"corrupted config", Fault{Kind: CorruptByte, Target: img.ConfigDigest, Offset: 10}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := New(t)
			ref := reg.Push(t, "cfs/test", "latest", img)
			reg.Inject(tc.fault)
			_, err := pull(t, ref)
			if err == nil {
				t.Fatal("the pull succeeded despite the fault")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			t.Logf("c/image: %v", err)
		})
	}
}

// TestOneCutIsResumed shows the fault is a real mid-body failure: c/image
// resumes with "Range: bytes=N-", which this registry completes for ggcr.
func TestOneCutIsResumed(t *testing.T) {
	img := mustSmallImage(t)
	big := img.Layers[0]
	reg := New(t)
	ref := reg.Push(t, "cfs/test", "latest", img)
	reg.Inject(Fault{Kind: CutConnection, Target: big.Digest, Offset: big.Size / 2, Times: 1})
	layout, err := pull(t, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := pulledManifest(t, layout); got != img.ManifestDigest {
		t.Errorf("pulled manifest %s, want %s", got, img.ManifestDigest)
	}
	if n := reg.Gets(big.Digest); n != 2 {
		t.Errorf("%d GETs of the cut layer, want 2 (cut, then resumed)", n)
	}
	if _, err := pull(t, ref); err != nil {
		t.Errorf("the fault should have retired after one hit: %v", err)
	}
}

func TestClearFaults(t *testing.T) {
	img := mustSmallImage(t)
	reg := New(t)
	ref := reg.Push(t, "cfs/test", "latest", img)
	reg.Inject(Fault{Kind: StatusError})
	if _, err := pull(t, ref); err == nil {
		t.Fatal("a fault on every blob did not fail the pull")
	}
	reg.ClearFaults()
	if _, err := pull(t, ref); err != nil {
		t.Fatal(err)
	}
}

func TestBlobsOnDiskWithRequestLog(t *testing.T) {
	img := mustSmallImage(t)
	reg := New(t, WithBlobsOnDisk(), WithRequestLog())
	layout, err := pull(t, reg.Push(t, "cfs/disk", "latest", img))
	if err != nil {
		t.Fatal(err)
	}
	if got := pulledManifest(t, layout); got != img.ManifestDigest {
		t.Errorf("pulled manifest %s, pushed %s", got, img.ManifestDigest)
	}
}

// TestLargeImageRoundTrip pushes and pulls the benchmark image; Push must
// stream it, so it runs only on request.
func TestLargeImageRoundTrip(t *testing.T) {
	if os.Getenv("CFS_TEST_LARGE") == "" || testing.Short() {
		t.Skip("set CFS_TEST_LARGE=1 to push and pull the ~1 GiB image")
	}
	img, err := testimage.Large(1)
	if err != nil {
		t.Fatal(err)
	}
	reg := New(t, WithBlobsOnDisk())
	start := time.Now()
	ref := reg.Push(t, "cfs/large", "latest", img)
	t.Logf("pushed in %v", time.Since(start))
	start = time.Now()
	layout, err := pull(t, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled in %v", time.Since(start))
	if got := pulledManifest(t, layout); got != img.ManifestDigest {
		t.Errorf("pulled manifest %s, pushed %s", got, img.ManifestDigest)
	}
}

// TestStallHoldsTheConnection: a stalled blob never finishes; only the
// client's own deadline ends the pull, and Close does not wait for it.
func TestStallHoldsTheConnection(t *testing.T) {
	img := mustSmallImage(t)
	big := img.Layers[0]
	reg := New(t)
	ref := reg.Push(t, "cfs/test", "latest", img)
	reg.Inject(Fault{Kind: Stall, Target: big.Digest, Offset: big.Size / 2})
	src, _ := alltransports.ParseImageName(ref)
	dst, _ := alltransports.ParseImageName("oci:" + t.TempDir() + ":pulled")
	policy, _ := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	defer func() { _ = policy.Destroy() }()
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, BlobInfoCacheDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := copy.Image(ctx, policy, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys})
	if err == nil || time.Since(start) < time.Second {
		t.Fatalf("a stalled blob: %v after %v", err, time.Since(start))
	}
	reg.Close()
}
