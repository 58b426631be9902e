package ostreeimport

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// Commit metadata keys, as ostree-ext and bootc read them.
const (
	KeyManifest       = "ostree.manifest"
	KeyManifestDigest = "ostree.manifest-digest"
	KeyImageConfig    = "ostree.container.image-config"
	KeyBootable       = "ostree.bootable"
	KeyLinux          = "ostree.linux"
	KeySynthesized    = "ostree-ext.composefs-synthesized"
	KeyVersion        = "version"
)

// versionLabels are read in this order for the commit's "version", as
// ostree-ext does (the OCI label first, then the legacy one).
var versionLabels = []string{"org.opencontainers.image.version", "version"}

type imageDocs struct {
	created time.Time
	version string
}

// readDocs extracts what the commit needs from the manifest and config.
// The timestamp is the manifest's org.opencontainers.image.created
// annotation, else the config's created, else now (ostree-ext's
// timestamp_of_manifest_or_config): rpm-ostree breaks on a zero timestamp.
func readDocs(img *stream.Image, now time.Time) (imageDocs, error) {
	var manifest struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal([]byte(img.Manifest), &manifest); err != nil {
		return imageDocs{}, fmt.Errorf("image record: manifest: %w", err)
	}
	var config struct {
		Created *time.Time `json:"created"`
		Config  struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(img.Config), &config); err != nil {
		return imageDocs{}, fmt.Errorf("image record: config: %w", err)
	}
	d := imageDocs{created: now}
	if s, ok := manifest.Annotations["org.opencontainers.image.created"]; ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return imageDocs{}, fmt.Errorf("image record: manifest annotation org.opencontainers.image.created %q: %w", s, err)
		}
		d.created = t
	} else if config.Created != nil && !config.Created.IsZero() {
		d.created = *config.Created
	}
	for _, l := range versionLabels {
		if v := config.Config.Labels[l]; v != "" {
			d.version = v
			break
		}
	}
	return d, nil
}

// commitMetadata is the a{sv} of a synthesized commit, sorted as
// ostree-ext's BTreeMap sorts it.
func commitMetadata(img *stream.Image, docs imageDocs, kernel string) []ostree.MetaEntry {
	m := []ostree.MetaEntry{
		ostree.MetaString(KeyManifest, img.Manifest),
		ostree.MetaString(KeyManifestDigest, img.ManifestDigest),
		ostree.MetaString(KeyImageConfig, img.Config),
		ostree.MetaBool(KeyBootable, true),
		ostree.MetaBool(KeySynthesized, true),
	}
	if docs.version != "" {
		m = append(m, ostree.MetaString(KeyVersion, docs.version))
	}
	if kernel != "" {
		m = append(m, ostree.MetaString(KeyLinux, kernel))
	}
	ostree.SortMetadata(m)
	return m
}
