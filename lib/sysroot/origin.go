package sysroot

import (
	"fmt"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/ostree"
)

// Origin is a deployment's origin file: a GKeyFile next to an ostree
// deployment (<commit>.<serial>.origin) or inside a composefs one
// (state/deploy/<id>/<id>.origin).
type Origin struct {
	Path           string
	ImageReference string // [origin] container-image-reference, e.g. ostree-unverified-registry:quay.io/x:tag
	Refspec        string // [origin] refspec: a plain ostree deployment, not bootc's
	BootType       string // [boot] boot_type: "bls" or "uki" (composefs)
	BootDigest     string // [boot] digest (composefs)
	ManifestDigest string // [image] manifest_digest (composefs)
}

// ReadOrigin parses an origin file.
func ReadOrigin(path string) (*Origin, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	kf, err := ostree.ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	o := &Origin{Path: path}
	o.ImageReference, _ = kf.Get("origin", "container-image-reference")
	o.Refspec, _ = kf.Get("origin", "refspec")
	o.BootType, _ = kf.Get("boot", "boot_type")
	o.BootDigest, _ = kf.Get("boot", "digest")
	o.ManifestDigest, _ = kf.Get("image", "manifest_digest")
	if o.ImageReference == "" && o.Refspec == "" {
		return nil, fmt.Errorf("%s: no [origin] container-image-reference", path)
	}
	if o.ImageReference != "" {
		if _, err := bootcconv.ParseImageReference(o.ImageReference); err != nil {
			return nil, fmt.Errorf("%s: container-image-reference: %w", path, err)
		}
	}
	switch o.BootType {
	case "", "bls", "uki":
	default:
		return nil, fmt.Errorf("%s: [boot] boot_type %q is neither bls nor uki", path, o.BootType)
	}
	if o.ManifestDigest != "" && !validDigest(o.ManifestDigest) {
		return nil, fmt.Errorf("%s: [image] manifest_digest %q is not a sha256 digest", path, o.ManifestDigest)
	}
	return o, nil
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	return ok && isHex(h, 64)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
