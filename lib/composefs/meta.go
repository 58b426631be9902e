package composefs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cfs-project/cfs/lib/fsverity"
)

// formatVersion is composefs-rs's REPO_FORMAT_VERSION.
const formatVersion = 1

// meta is meta.json. Field order and names are composefs-rs's RepoMetadata,
// so that json.MarshalIndent with two spaces gives the bytes
// serde_json::to_vec_pretty writes.
type meta struct {
	Version      int          `json:"version"`
	Algorithm    string       `json:"algorithm"`
	Features     features     `json:"features"`
	ErofsFormats erofsFormats `json:"erofs_formats"`
}

type features struct {
	Compatible         []string `json:"compatible"`
	ReadOnlyCompatible []string `json:"read-only-compatible"`
	Incompatible       []string `json:"incompatible"`
}

type erofsFormats struct {
	Default int   `json:"default"`
	Extra   []int `json:"extra,omitempty"`
}

// knownROCompat are the read-only-compatible features this package
// understands; anything else there means we may read but not write.
var knownROCompat = map[string]bool{"v1_erofs": true}

func newMeta(alg fsverity.Algorithm) meta {
	return meta{
		Version:      formatVersion,
		Algorithm:    algorithmName(alg),
		Features:     features{Compatible: []string{}, ReadOnlyCompatible: []string{"v1_erofs"}, Incompatible: []string{}},
		ErofsFormats: erofsFormats{Default: 1},
	}
}

func algorithmName(alg fsverity.Algorithm) string {
	return fmt.Sprintf("fsverity-%s-12", alg)
}

func (m meta) encode() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// parseMeta reads meta.json as composefs-rs does: features and
// erofs_formats may be missing; an unknown incompatible feature or a
// newer version refuses the repository.
func parseMeta(data []byte) (meta, fsverity.Algorithm, bool, error) {
	var m meta
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return m, 0, false, fmt.Errorf("meta.json: %v", err)
	}
	if m.Version > formatVersion || m.Version < 1 {
		return m, 0, false, fmt.Errorf("meta.json: repository format version %d is not supported (this tool knows %d)", m.Version, formatVersion)
	}
	name, ok := strings.CutPrefix(m.Algorithm, "fsverity-")
	name, ok2 := strings.CutSuffix(name, "-12")
	if !ok || !ok2 {
		return m, 0, false, fmt.Errorf("meta.json: algorithm %q is not fsverity-<sha256|sha512>-12", m.Algorithm)
	}
	alg, err := fsverity.ParseAlgorithm(name)
	if err != nil {
		return m, 0, false, fmt.Errorf("meta.json: algorithm %q: %v", m.Algorithm, err)
	}
	if len(m.Features.Incompatible) > 0 {
		return m, 0, false, fmt.Errorf("meta.json: repository needs features this tool does not have: %s", strings.Join(m.Features.Incompatible, ", "))
	}
	writable := true
	for _, f := range m.Features.ReadOnlyCompatible {
		writable = writable && knownROCompat[f]
	}
	if m.ErofsFormats.Default == 0 && !contains(m.Features.ReadOnlyCompatible, "v1_erofs") {
		// composefs-rs reads a missing erofs_formats as V2-only; we write V1.
		writable = false
	}
	return m, alg, writable, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
