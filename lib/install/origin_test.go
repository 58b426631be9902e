package install

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestOriginReferences(t *testing.T) {
	for ref, want := range map[string][2]string{
		"docker://quay.io/org/os:42": {"ostree-unverified-registry:quay.io/org/os:42", "ostree-unverified-image:docker://quay.io/org/os:42"},
		"oci:/srv/os:latest":         {"ostree-unverified-image:oci:/srv/os:latest", "ostree-unverified-image:oci:/srv/os:latest"},
		// bootc's native origin is always unverified, in containers/image form.
		"ostree-image-signed:docker://quay.io/org/os:42":  {"ostree-image-signed:docker://quay.io/org/os:42", "ostree-unverified-image:docker://quay.io/org/os:42"},
		"ostree-unverified-registry:quay.io/org/os:42":    {"ostree-unverified-registry:quay.io/org/os:42", "ostree-unverified-image:docker://quay.io/org/os:42"},
		"registry:quay.io/org/os:42":                      {"ostree-unverified-registry:quay.io/org/os:42", "ostree-unverified-image:docker://quay.io/org/os:42"},
		"containers-storage:localhost/os":                 {"ostree-unverified-image:containers-storage:localhost/os", "ostree-unverified-image:containers-storage:localhost/os"},
		"ostree-remote-registry:fedora:quay.io/org/os:42": {"ostree-remote-registry:fedora:quay.io/org/os:42", "ostree-unverified-image:docker://quay.io/org/os:42"},
	} {
		if got := OriginReference(ref); got != want[0] {
			t.Errorf("OriginReference(%q) = %q, want %q", ref, got, want[0])
		}
		if got := NativeOriginReference(ref); got != want[1] {
			t.Errorf("NativeOriginReference(%q) = %q, want %q", ref, got, want[1])
		}
	}
}

// An image reference without a transport cannot go in an origin: refused
// before ROOT is looked at.
func TestInstallRefusesReferenceWithoutTransport(t *testing.T) {
	root := t.TempDir()
	_, err := Install(context.Background(), Options{Root: root, Source: "oci:/nonexistent:latest", SourceImgref: "quay.io/org/os:42"})
	if err == nil || !strings.Contains(err.Error(), "quay.io/org/os:42") || !strings.Contains(err.Error(), "transport") {
		t.Fatalf("want an error naming the reference, got %v", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("ROOT holds %v", ents)
	}
}

// TestDeleteKargs: bootc's delete_kargs, as [install] karg-deletes uses it.
func TestDeleteKargs(t *testing.T) {
	got := deleteKargs([]string{"root=UUID=1", "rw", "console=ttyS0", "console=tty1", "quiet", "mitigations=auto"},
		[]string{"console", "mitigations=off", "quiet", "rw"})
	if strings.Join(got, " ") != "root=UUID=1 mitigations=auto" {
		t.Errorf("got %q", got)
	}
}
