package sigpolicy

import (
	"errors"
	"strings"
	"testing"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testsign"
)

// TestAcceptsAnything: only a default made of insecureAcceptAnything
// accepts any image; bootc judges the default alone, so per-transport
// scopes do not count.
func TestAcceptsAnything(t *testing.T) {
	for body, want := range map[string]bool{
		`{"default":[{"type":"insecureAcceptAnything"}]}`:                                                                        true,
		`{"default":[{"type":"insecureAcceptAnything"},{"type":"insecureAcceptAnything"}]}`:                                      true,
		`{"default":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}`:                                                      false,
		`{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}}`:                       false,
		`{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k.gpg"}]}`:                                               false,
		`{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"quay.io":[{"type":"reject"}]}}}`:                true,
		`{"default":[{"type":"sigstoreSigned","keyPath":"/k.pub","signedIdentity":{"type":"matchRepository"}}]}`:                 false,
		`{"default":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"exactRepository","dockerRepository":"quay.io/x"}}]}`: false,
	} {
		p, err := signature.NewPolicyFromBytes([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got := acceptsAnything(p.Default); got != want {
			t.Errorf("%s: acceptsAnything = %v, want %v", body, got, want)
		}
	}
}

// TestLoadSigPolicyNamesFile: the policy is found where containers/image
// looks (here $CONTAINERS_POLICY_JSON) and the refusal names that file.
func TestLoadSigPolicyNamesFile(t *testing.T) {
	p := testsign.PolicyFile(t, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	t.Setenv("CONTAINERS_POLICY_JSON", p)
	sp, err := Load(&types.SystemContext{}, false)
	if err != nil {
		t.Fatal(err)
	}
	err = sp.AssertNotInsecure("--enforce-container-sigpolicy")
	if !errors.Is(err, ErrInsecure) || !strings.HasPrefix(err.Error(), p+": ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %v", err)
	}
	// --signature-policy wins over the search.
	strict := testsign.PolicyFile(t, `{"default":[{"type":"reject"}]}`)
	if sp, err = Load(&types.SystemContext{SignaturePolicyPath: strict}, false); err != nil || sp.File != strict || sp.AssertNotInsecure("x") != nil {
		t.Errorf("--signature-policy: %+v %v", sp, err)
	}
	bad := testsign.PolicyFile(t, `{"default":[]}`)
	if _, err := Load(&types.SystemContext{SignaturePolicyPath: bad}, false); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("an invalid policy: %v", err)
	}
	if sp, err = Load(nil, true); err != nil || sp.AssertNotInsecure("x") == nil {
		t.Errorf("--insecure-policy with enforcement: %v", err)
	}
}
