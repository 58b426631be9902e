package install

import (
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/fstree"
)

// TestAlephBytes: the record is bootc's canonical JSON: keys sorted
// (labels too), compact, no HTML escaping, null version and timestamp
// when the labels say nothing, image left out for a source under /tmp.
func TestAlephBytes(t *testing.T) {
	cfg := []byte(`{"config":{"Labels":{"version":"42.1","b<&>":"x\"\\\n\u2028é","a":"1","org.opencontainers.image.created":"2024-05-06T07:08:09.120+02:00"}}}`)
	a, err := newAleph("docker://quay.io/org/os:42", "docker://quay.io/org/os:stable", "sha256:abc", cfg, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	a.Kernel = "6.1.0-test"
	want := `{"digest":"sha256:abc","image":"quay.io/org/os:42","kernel":"6.1.0-test",` +
		`"labels":{"a":"1","b<&>":"x\"\\\n` + "\u2028é" + `","org.opencontainers.image.created":"2024-05-06T07:08:09.120+02:00","version":"42.1"},` +
		`"selinux":"disabled","target-image":"quay.io/org/os:stable","timestamp":"2024-05-06T05:08:09.120Z","version":"42.1"}`
	if got := string(a.canonicalJSON()); got != want {
		t.Errorf("aleph\n got %s\nwant %s", got, want)
	}

	a, err = newAleph("oci:/tmp/build:latest", "oci:/tmp/build:latest", "sha256:abc", []byte(`{"config":{}}`), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	a.Kernel = "k"
	want = `{"digest":"sha256:abc","kernel":"k","selinux":"disabled","target-image":"/tmp/build:latest","timestamp":null,"version":null}`
	if got := string(a.canonicalJSON()); got != want {
		t.Errorf("aleph\n got %s\nwant %s", got, want)
	}
}

func TestAlephTimestampAndSELinux(t *testing.T) {
	for ns, want := range map[int]string{0: "2024-01-02T03:04:05Z", 5e8: "2024-01-02T03:04:05.500Z",
		123456000: "2024-01-02T03:04:05.123456Z", 1: "2024-01-02T03:04:05.000000001Z"} {
		if got := rfc3339AutoSi(time.Date(2024, 1, 2, 3, 4, 5, ns, time.UTC)); got != want {
			t.Errorf("%d ns: %s, want %s", ns, got, want)
		}
	}
	tree := fstree.NewDir(fstree.Stat{Mode: 0o755})
	if imageHasSELinux(tree) {
		t.Error("an empty image has SELinux")
	}
	etc := fstree.NewDir(fstree.Stat{Mode: 0o755})
	sel := fstree.NewDir(fstree.Stat{Mode: 0o755})
	sel.Set("config", &fstree.Leaf{Kind: fstree.Regular, Inline: []byte("SELINUX=enforcing\n")})
	etc.Set("selinux", sel)
	tree.Set("etc", etc)
	if !imageHasSELinux(tree) || selinuxState(true, true) != "enabled" || selinuxState(true, false) != "host-disabled" || selinuxState(false, true) != "disabled" {
		t.Error("SELinux state")
	}
}
