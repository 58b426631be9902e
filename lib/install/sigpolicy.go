package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
)

// ErrInsecurePolicy is wrapped when enforce-container-sigpolicy is on and
// the signature policy accepts any image by default.
var ErrInsecurePolicy = errors.New("default is insecureAcceptAnything (any image is accepted)")

// insecureFlag names the policy --insecure-policy makes.
const insecureFlag = "--insecure-policy"

// sigPolicy is the signature policy an install pulls with, and where it
// came from.
type sigPolicy struct {
	policy *signature.Policy
	// file is the policy file read, or "--insecure-policy".
	file string
}

// loadSigPolicy reads the policy the pull decides with, as
// signature.DefaultPolicy finds it (sys.SignaturePolicyPath, else
// $CONTAINERS_POLICY_JSON, the user's containers/policy.json,
// /etc/containers/policy.json, /usr/share/containers/policy.json), but
// keeping the file's name for messages; with insecure (explicit only),
// one accepting anything.
func loadSigPolicy(sys *types.SystemContext, insecure bool) (*sigPolicy, error) {
	if insecure {
		return &sigPolicy{
			policy: &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}},
			file:   insecureFlag,
		}, nil
	}
	if sys != nil && sys.SignaturePolicyPath != "" {
		p, err := signature.NewPolicyFromFile(sys.SignaturePolicyPath)
		if err != nil {
			return nil, fmt.Errorf("reading the signature policy: %w", err)
		}
		return &sigPolicy{policy: p, file: sys.SignaturePolicyPath}, nil
	}
	files := configfile.File{
		Name: "policy", Extension: "json", DoNotLoadDropInFiles: true,
		EnvironmentName: "CONTAINERS_POLICY_JSON", ErrorIfNotFound: true,
	}
	if sys != nil {
		files.RootForImplicitAbsolutePaths = sys.RootForImplicitAbsolutePaths
	}
	var sp *sigPolicy
	for item, err := range configfile.Read(&files) {
		if err != nil {
			return nil, fmt.Errorf("reading the signature policy: %w", err)
		}
		if sp != nil {
			break // configfile yields one policy file at most
		}
		data, err := io.ReadAll(item.Reader)
		if err != nil {
			return nil, fmt.Errorf("reading the signature policy %s: %w", item.Name, err)
		}
		p, err := signature.NewPolicyFromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("reading the signature policy: invalid policy in %q: %w", item.Name, err)
		}
		sp = &sigPolicy{policy: p, file: item.Name}
	}
	if sp == nil {
		return nil, errors.New("reading the signature policy: no policy.json found")
	}
	return sp, nil
}

// context is the policy context pull.Open checks the image with.
func (sp *sigPolicy) context() (*signature.PolicyContext, error) {
	return signature.NewPolicyContext(sp.policy)
}

// assertNotInsecure refuses a policy whose default accepts any image, as
// bootc (ostree-ext) refuses a fetch with the container policy enforced:
// only the default is judged, not the per-transport scopes, so a policy
// rejecting by default and accepting a registry without signatures
// passes, as it does with bootc. bootc counts a default of exactly one
// insecureAcceptAnything; a default made only of them is as insecure and
// is refused too.
func (sp *sigPolicy) assertNotInsecure(why string) error {
	if sp.file == insecureFlag {
		return fmt.Errorf("%s accepts any image, which %s refuses", insecureFlag, why)
	}
	if acceptsAnything(sp.policy.Default) {
		return fmt.Errorf("%s: %w, which %s refuses", sp.file, ErrInsecurePolicy, why)
	}
	return nil
}

// acceptsAnything says whether every requirement of reqs (an empty list
// is invalid in a policy file) is insecureAcceptAnything. The requirement
// types are private to c/image: their JSON form names them.
func acceptsAnything(reqs signature.PolicyRequirements) bool {
	if len(reqs) == 0 {
		return false
	}
	for _, r := range reqs {
		data, err := json.Marshal(r)
		if err != nil {
			return false
		}
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(data, &t) != nil || t.Type != "insecureAcceptAnything" {
			return false
		}
	}
	return true
}

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
