package ostreeimport

import (
	"fmt"
	"time"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

type imageDocs struct {
	created time.Time
	version string
}

// readDocs extracts what the commit needs from the manifest and config:
// the timestamp (bootcconv.CommitTimestamp, else now: rpm-ostree breaks on
// a zero timestamp) and the version (bootcconv's Config.Version).
func readDocs(img *stream.Image, now time.Time) (imageDocs, error) {
	m, err := bootcconv.ParseManifest([]byte(img.Manifest))
	if err != nil {
		return imageDocs{}, fmt.Errorf("image record: %w", err)
	}
	cfg, err := bootcconv.ParseConfig([]byte(img.Config))
	if err != nil {
		return imageDocs{}, fmt.Errorf("image record: %w", err)
	}
	d := imageDocs{created: now}
	t, ok, err := bootcconv.CommitTimestamp(m, cfg)
	if err != nil {
		return imageDocs{}, fmt.Errorf("image record: %w", err)
	}
	if ok {
		d.created = t
	}
	d.version, _ = cfg.Version()
	return d, nil
}

// commitMetadata is the a{sv} of a synthesized commit, sorted as
// ostree-ext's BTreeMap sorts it.
func commitMetadata(img *stream.Image, docs imageDocs, kernel string) []ostree.MetaEntry {
	m := []ostree.MetaEntry{
		ostree.MetaString(bootcconv.KeyManifest, img.Manifest),
		ostree.MetaString(bootcconv.KeyManifestDigest, img.ManifestDigest),
		ostree.MetaString(bootcconv.KeyImageConfig, img.Config),
		ostree.MetaBool(bootcconv.KeyBootable, true),
		ostree.MetaBool(bootcconv.KeySynthesized, true),
	}
	if docs.version != "" {
		m = append(m, ostree.MetaString(bootcconv.KeyVersion, docs.version))
	}
	if kernel != "" {
		m = append(m, ostree.MetaString(bootcconv.KeyLinux, kernel))
	}
	ostree.SortMetadata(m)
	return m
}
