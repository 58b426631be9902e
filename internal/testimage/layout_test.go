package testimage

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// skopeo runs skopeo with its state (blob-info cache, policy lookups) kept
// away from the host's /var/lib/containers.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := testfs.RequireTool(t, "skopeo")
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), bin, append([]string{"--policy", policy}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
	return out
}

func TestOCILayoutAcceptedBySkopeo(t *testing.T) {
	img := mustSmallImage(t)
	dir := t.TempDir()
	if err := img.WriteOCILayout(dir, "latest"); err != nil {
		t.Fatal(err)
	}

	var inspect struct {
		Digest string
		Labels map[string]string
		Os     string
		Layers []string
	}
	if err := json.Unmarshal(skopeo(t, "inspect", "oci:"+dir+":latest"), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Digest != img.ManifestDigest.String() || inspect.Os != "linux" ||
		inspect.Labels["containers.bootc"] != "1" || len(inspect.Layers) != len(img.Layers) {
		t.Errorf("skopeo inspect disagrees with the image: %+v", inspect)
	}

	// skopeo copy verifies every blob digest while copying; dir: keeps the
	// manifest byte for byte and names blobs by their digest.
	out := filepath.Join(t.TempDir(), "copy")
	skopeo(t, "copy", "oci:"+dir+":latest", "dir:"+out)
	manifest, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(manifest) != string(img.Manifest) {
		t.Errorf("the copied manifest differs:\n%s\nwant\n%s", manifest, img.Manifest)
	}
	for _, l := range img.Layers {
		if fi, err := os.Stat(filepath.Join(out, l.Digest.Encoded())); err != nil || fi.Size() != l.Size {
			t.Errorf("layer %s not copied intact: %v", l.Digest, err)
		}
	}
}

// TestOCILayoutHoldsSeveralTags writes two releases into one layout, as
// update tests will, and retags one of them.
func TestOCILayoutHoldsSeveralTags(t *testing.T) {
	v1img := mustSmallImage(t)
	v2img, err := Generate(Options{Seed: 1, Version: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, step := range []struct {
		img *Image
		tag string
	}{{v1img, "v1"}, {v2img, "v2"}, {v2img, "v1"}} {
		if err := step.img.WriteOCILayout(dir, step.tag); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index v1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, m := range index.Manifests {
		tags[m.Annotations[v1.AnnotationRefName]] = m.Digest.String()
	}
	if len(index.Manifests) != 2 || tags["v1"] != v2img.ManifestDigest.String() || tags["v2"] != v2img.ManifestDigest.String() {
		t.Errorf("index after retagging: %s", data)
	}
	// Shared layers are stored once; v1's own top layer and config stay.
	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 8 {
		t.Errorf("%d blobs, want 8: two manifests, two configs, two shared layers, two top layers", len(blobs))
	}
}
