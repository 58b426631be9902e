package ostreeimport

import (
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/stream"
)

// TestVersionLabel: the commit's version is what bootc status shows for
// the image, so an empty org.opencontainers.image.version hides the
// legacy "version" label, as ostree-ext's version_for_config has it.
func TestVersionLabel(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for labels, want := range map[string]string{
		`{"org.opencontainers.image.version":"42.1","version":"7"}`: "42.1",
		`{"version":"7"}`: "7",
		`{"org.opencontainers.image.version":"","version":"7"}`: "",
	} {
		img := &stream.Image{Manifest: `{}`, Config: `{"config":{"Labels":` + labels + `}}`}
		d, err := readDocs(img, now)
		if err != nil {
			t.Fatal(err)
		}
		if d.version != want {
			t.Errorf("labels %s: version %q, want %q", labels, d.version, want)
		}
		for _, e := range commitMetadata(img, d, "") {
			if e.Key == "version" && want == "" {
				t.Errorf("labels %s: the commit has a version", labels)
			}
		}
	}
}
