package clone

import (
	"testing"

	"github.com/cfs-project/cfs/lib/stream"
)

func TestDefaultNames(t *testing.T) {
	const cfg = "sha256:46a69edbb0bf0123456789abcdef0123456789abcdef0123456789abcdef0123"
	for src, want := range map[string]string{
		"docker://quay.io/org/os:42":                       "quay.io/org/os:42",
		"docker://busybox":                                 "docker.io/library/busybox:latest",
		"containers-storage:[overlay@/g+/r]localhost/os:1": "localhost/os:1",
		"containers-storage:fedora":                        "docker.io/library/fedora:latest",
		"docker://quay.io/org/os@sha256:" + cfg[7:]:        "localhost/bootc-recovered:46a69edbb0bf",
		"oci:/srv/layout:latest":                           "localhost/bootc-recovered:46a69edbb0bf",
		"":                                                 "localhost/bootc-recovered:46a69edbb0bf",
	} {
		got := DefaultNames(&stream.Image{Source: src, ConfigDigest: cfg})
		if len(got) != 1 || got[0] != want {
			t.Errorf("source %q: names %v, want %s", src, got, want)
		}
	}
}
