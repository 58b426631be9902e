package bootcconv

import (
	"strings"
	"testing"
	"time"
)

// TestVersion follows ostree-ext's version_for_config: the first label
// present wins, even empty, so an empty org.opencontainers.image.version
// hides the legacy "version" label.
func TestVersion(t *testing.T) {
	for _, c := range []struct {
		labels string
		want   string
		ok     bool
	}{
		{`{"org.opencontainers.image.version":"42.1","version":"7"}`, "42.1", true},
		{`{"version":"7"}`, "7", true},
		{`{"org.opencontainers.image.version":"","version":"7"}`, "", true},
		{`{"other":"x"}`, "", false},
		{`null`, "", false},
	} {
		cfg, err := ParseConfig([]byte(`{"config":{"Labels":` + c.labels + `}}`))
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := cfg.Version(); v != c.want || ok != c.ok {
			t.Errorf("labels %s: version %q %v, want %q %v", c.labels, v, ok, c.want, c.ok)
		}
	}
}

func TestManifestVersion(t *testing.T) {
	m, err := ParseManifest([]byte(`{"annotations":{"org.opencontainers.image.version":"9"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Version(); v != "9" || !ok {
		t.Errorf("version %q %v", v, ok)
	}
	m, _ = ParseManifest([]byte(`{}`))
	if v, ok := m.Version(); v != "" || ok {
		t.Errorf("no annotations: version %q %v", v, ok)
	}
}

func TestTimestamps(t *testing.T) {
	cfg, _ := ParseConfig([]byte(`{"created":"2024-01-02T03:04:05Z","config":{"Labels":{"org.opencontainers.image.created":"2025-06-07T08:09:10+02:00"}}}`))
	if ts, ok := cfg.StatusTimestamp(); !ok || !ts.Equal(time.Date(2025, 6, 7, 6, 9, 10, 0, time.UTC)) {
		t.Errorf("status timestamp %v %v: the label comes first", ts, ok)
	}
	if ts, ok := cfg.CreatedTime(); !ok || !ts.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("created %v %v", ts, ok)
	}
	bad, _ := ParseConfig([]byte(`{"created":"yesterday"}`))
	if _, ok := bad.StatusTimestamp(); ok {
		t.Error("an unparsable created counts as a timestamp")
	}

	m, _ := ParseManifest([]byte(`{"annotations":{"org.opencontainers.image.created":"2023-01-01T00:00:00Z"}}`))
	if ts, ok, err := CommitTimestamp(m, cfg); err != nil || !ok || ts.Year() != 2023 {
		t.Errorf("commit timestamp %v %v %v: the manifest annotation comes first", ts, ok, err)
	}
	none, _ := ParseManifest([]byte(`{}`))
	if ts, ok, err := CommitTimestamp(none, cfg); err != nil || !ok || ts.Year() != 2024 {
		t.Errorf("commit timestamp %v %v %v: then the config's created", ts, ok, err)
	}
	empty, _ := ParseConfig([]byte(`{"created":"0001-01-01T00:00:00Z"}`))
	if _, ok, err := CommitTimestamp(none, empty); ok || err != nil {
		t.Errorf("a zero created gives a timestamp (%v %v)", ok, err)
	}
	if _, _, err := CommitTimestamp(none, bad); err == nil || !strings.Contains(err.Error(), "yesterday") {
		t.Errorf("an unparsable created: %v", err)
	}
}

func TestParseConfigRefuses(t *testing.T) {
	for in, want := range map[string]string{
		`{`:                              "image config",
		`{"rootfs":{"type":"tarballs"}}`: `rootfs type "tarballs"`,
		`{"rootfs":{"type":"layers","diff_ids":["sha256:xyz"]}}`:                             `diff_id "sha256:xyz"`,
		`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("A", 64) + `"]}}`: "diff_id",
	} {
		if _, err := ParseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", in, err, want)
		}
	}
	cfg, err := ParseConfig([]byte(`{"architecture":"amd64"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.DiffIDs(); err == nil {
		t.Error("DiffIDs of a config without rootfs")
	}
}

func TestDefaultTag(t *testing.T) {
	if got := DefaultTag("sha256:ab"); got != "localhost/bootc-sha256:ab" {
		t.Errorf("DefaultTag = %q", got)
	}
}
