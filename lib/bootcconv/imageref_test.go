package bootcconv

import "testing"

func TestParseImageReference(t *testing.T) {
	for in, want := range map[string]ImageReference{
		"ostree-unverified-registry:quay.io/x:1":                       {Image: "quay.io/x:1", Transport: "registry"},
		"ostree-unverified-image:docker://quay.io/x:1":                 {Image: "quay.io/x:1", Transport: "registry"},
		"ostree-unverified-image:registry:quay.io/x:1":                 {Image: "quay.io/x:1", Transport: "registry"},
		"ostree-unverified-image:containers-storage:localhost/bootc":   {Image: "localhost/bootc", Transport: "containers-storage"},
		"ostree-unverified-image:oci:/var/tmp/img":                     {Image: "/var/tmp/img", Transport: "oci"},
		"ostree-image-signed:docker://quay.io/x":                       {Image: "quay.io/x", Transport: "registry", Signature: "containerPolicy"},
		"ostree-remote-registry:fedora:quay.io/fedora/fedora-bootc:42": {Image: "quay.io/fedora/fedora-bootc:42", Transport: "registry", Signature: "ostreeRemote", OstreeRemote: "fedora"},
		"ostree-remote-image:fedora:docker://quay.io/x":                {Image: "quay.io/x", Transport: "registry", Signature: "ostreeRemote", OstreeRemote: "fedora"},
	} {
		got, err := ParseImageReference(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "quay.io/x", "ostree-unverified-image:quay.io/x", "ostree-unverified-image:ftp:x", "ostree-remote-registry::x", "ostree-unverified-registry:"} {
		if _, err := ParseImageReference(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	r, _ := ParseImageReference("ostree-unverified-image:containers-storage:localhost/bootc")
	if r.String() != "containers-storage:localhost/bootc" {
		t.Errorf("String %q", r.String())
	}
}
