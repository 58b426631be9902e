// Package sigpolicy reads the containers signature policy
// (containers-policy.json) a pull is checked against, keeping the name of
// the file it came from, and judges it as bootc (ostree-ext) does for an
// image reference that requires signatures (ostree-image-signed:): a
// policy whose default accepts any image is refused.
package sigpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
)

// ErrInsecure is wrapped when a policy that must require signatures
// accepts any image by default.
var ErrInsecure = errors.New("default is insecureAcceptAnything (any image is accepted)")

// InsecureFlag names the policy an explicit --insecure-policy makes; it is
// Policy.File for that policy.
const InsecureFlag = "--insecure-policy"

// Policy is a signature policy and where it came from.
type Policy struct {
	Policy *signature.Policy
	// File is the policy file read, or InsecureFlag.
	File string
}

// Load reads the policy a pull decides with, as signature.DefaultPolicy
// finds it (sys.SignaturePolicyPath, else $CONTAINERS_POLICY_JSON, the
// user's containers/policy.json, /etc/containers/policy.json,
// /usr/share/containers/policy.json), but keeping the file's name for
// messages; with insecure (explicit only), one accepting anything.
func Load(sys *types.SystemContext, insecure bool) (*Policy, error) {
	if insecure {
		return &Policy{
			Policy: &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}},
			File:   InsecureFlag,
		}, nil
	}
	if sys != nil && sys.SignaturePolicyPath != "" {
		p, err := signature.NewPolicyFromFile(sys.SignaturePolicyPath)
		if err != nil {
			return nil, fmt.Errorf("reading the signature policy: %w", err)
		}
		return &Policy{Policy: p, File: sys.SignaturePolicyPath}, nil
	}
	files := configfile.File{
		Name: "policy", Extension: "json", DoNotLoadDropInFiles: true,
		EnvironmentName: "CONTAINERS_POLICY_JSON", ErrorIfNotFound: true,
	}
	if sys != nil {
		files.RootForImplicitAbsolutePaths = sys.RootForImplicitAbsolutePaths
	}
	var sp *Policy
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
		sp = &Policy{Policy: p, File: item.Name}
	}
	if sp == nil {
		return nil, errors.New("reading the signature policy: no policy.json found")
	}
	return sp, nil
}

// Context is the policy context a pull checks the image with.
func (sp *Policy) Context() (*signature.PolicyContext, error) {
	return signature.NewPolicyContext(sp.Policy)
}

// AssertNotInsecure refuses a policy whose default accepts any image, as
// bootc (ostree-ext) refuses a fetch of an ostree-image-signed reference:
// only the default is judged, not the per-transport scopes, so a policy
// rejecting by default and accepting a registry without signatures
// passes, as it does with bootc. bootc counts a default of exactly one
// insecureAcceptAnything; a default made only of them is as insecure and
// is refused too. why names what requires signatures, for the message:
// "<file>: <ErrInsecure>, which <why> refuses".
func (sp *Policy) AssertNotInsecure(why string) error {
	if sp.File == InsecureFlag {
		return fmt.Errorf("%s accepts any image, which %s refuses", InsecureFlag, why)
	}
	if acceptsAnything(sp.Policy.Default) {
		return fmt.Errorf("%s: %w, which %s refuses", sp.File, ErrInsecure, why)
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
