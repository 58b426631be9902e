package bootcconv

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Config is the part of an OCI image config the tools read.
type Config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		Labels map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// ParseConfig parses an image config. What it checks holds for every
// use: valid JSON, a rootfs of type "layers" if there is one, and diff
// IDs that are sha256 digests. Readers of the layers call DiffIDs.
func ParseConfig(raw []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	if c.RootFS.Type != "" && c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config: rootfs type %q is not \"layers\"", c.RootFS.Type)
	}
	for _, d := range c.RootFS.DiffIDs {
		if !isSHA256(d) {
			return nil, fmt.Errorf("image config: diff_id %q is not a sha256 digest", d)
		}
	}
	return &c, nil
}

// DiffIDs returns the layers' diff IDs; a config without a rootfs of
// type "layers" has none to give.
func (c *Config) DiffIDs() ([]string, error) {
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config: rootfs type %q is not \"layers\"", c.RootFS.Type)
	}
	return c.RootFS.DiffIDs, nil
}

// Version is the image's version as ostree-ext's version_for_config
// reads it, and bootc status shows it for an ostree deployment: the first
// of the labels org.opencontainers.image.version and version that is
// present, even when it is empty (an empty OCI label hides the legacy
// one); ok is false when neither is.
func (c *Config) Version() (v string, ok bool) {
	for _, l := range []string{LabelVersion, LabelVersionLegacy} {
		if v, ok := c.Config.Labels[l]; ok {
			return v, true
		}
	}
	return "", false
}

// StatusTimestamp is the image time bootc status shows for an ostree
// deployment: the org.opencontainers.image.created label, else the
// config's created. Like bootc, a value that is not RFC 3339 counts as
// none (ok false), not as an error.
func (c *Config) StatusTimestamp() (t time.Time, ok bool) {
	s, ok := c.Config.Labels[AnnotationCreated]
	if !ok {
		s = c.Created
	}
	return parseTime(s)
}

// CreatedTime is the config's created, as bootc status shows it for a
// composefs deployment (ok false when absent or not RFC 3339).
func (c *Config) CreatedTime() (time.Time, bool) { return parseTime(c.Created) }

func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// Manifest is the part of an image manifest the tools read.
type Manifest struct {
	Annotations map[string]string `json:"annotations"`
}

// ParseManifest parses the annotations of an image manifest.
func ParseManifest(raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("image manifest: %w", err)
	}
	return &m, nil
}

// Version is the image's version as bootc status shows it for a composefs
// deployment: the manifest annotation org.opencontainers.image.version
// (not the config label an ostree deployment shows).
func (m *Manifest) Version() (string, bool) {
	v, ok := m.Annotations[AnnotationVersion]
	return v, ok
}

// CommitTimestamp is the time of an ostree commit made from the image, as
// ostree-ext's timestamp_of_manifest_or_config picks it: the manifest's
// org.opencontainers.image.created annotation, else the config's created.
// ok is false when neither is there (the caller uses the current time:
// rpm-ostree breaks on a zero timestamp). A value that is not RFC 3339 is
// an error naming it; ostree-ext logs it and uses the current time.
func CommitTimestamp(m *Manifest, c *Config) (t time.Time, ok bool, err error) {
	what, s := "manifest annotation "+AnnotationCreated, m.Annotations[AnnotationCreated]
	if _, has := m.Annotations[AnnotationCreated]; !has {
		what, s = "config created", c.Created
	}
	if s == "" {
		return time.Time{}, false, nil
	}
	t, err = time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%s %q: %w", what, s, err)
	}
	return t, !t.IsZero(), nil
}

func isSHA256(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}
