package install

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testsign"
)

// TestEnforceRefusedBeforeRoot: --enforce-container-sigpolicy with a
// policy accepting anything is refused before the image is opened or ROOT
// is written.
func TestEnforceRefusedBeforeRoot(t *testing.T) {
	root := t.TempDir()
	p := testsign.PolicyFile(t, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	_, err := Install(context.Background(), Options{
		Root: root, Source: "oci:/nonexistent:latest", EnforceContainerSigpolicy: true,
		Sys: &types.SystemContext{SignaturePolicyPath: p},
	})
	if !errors.Is(err, ErrInsecurePolicy) || !strings.Contains(err.Error(), p) {
		t.Fatalf("want the insecure policy refused, naming %s: %v", p, err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("ROOT holds %v", ents)
	}
}

func TestSignedOriginReference(t *testing.T) {
	for ref, want := range map[string]string{
		"docker://quay.io/org/os:42":                      "ostree-image-signed:docker://quay.io/org/os:42",
		"registry:quay.io/org/os:42":                      "ostree-image-signed:docker://quay.io/org/os:42",
		"oci:/srv/os:latest":                              "ostree-image-signed:oci:/srv/os:latest",
		"containers-storage:localhost/os":                 "ostree-image-signed:containers-storage:localhost/os",
		"ostree-unverified-registry:quay.io/org/os:42":    "ostree-image-signed:docker://quay.io/org/os:42",
		"ostree-image-signed:docker://quay.io/org/os:42":  "ostree-image-signed:docker://quay.io/org/os:42",
		"ostree-remote-registry:fedora:quay.io/org/os:42": "ostree-remote-registry:fedora:quay.io/org/os:42",
	} {
		if got := SignedOriginReference(ref); got != want {
			t.Errorf("SignedOriginReference(%q) = %q, want %q", ref, got, want)
		}
	}
}
