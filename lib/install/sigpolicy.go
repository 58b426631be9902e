package install

import (
	"strings"

	"github.com/cfs-project/cfs/lib/sigpolicy"
)

// ErrInsecurePolicy is wrapped when enforce-container-sigpolicy is on and
// the signature policy accepts any image by default.
var ErrInsecurePolicy = sigpolicy.ErrInsecure

// SignedOriginReference is the container-image-reference bootc writes
// on an ostree host installed with enforce-container-sigpolicy:
// ostree-image-signed:<transport>:<name> (docker:// for a registry), so
// that upgrades pull with the container policy enforced. A reference
// verified by an ostree remote is kept as given.
func SignedOriginReference(ref string) string {
	if strings.HasPrefix(ref, "ostree-remote-") {
		return ref
	}
	return "ostree-image-signed:" + strings.TrimPrefix(NativeOriginReference(ref), "ostree-unverified-image:")
}
