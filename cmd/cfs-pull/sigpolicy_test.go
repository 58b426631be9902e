package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testsign"
)

// TestEnforceContainerSigpolicy: with --enforce-container-sigpolicy a
// policy accepting anything by default is refused, naming the file found
// as containers/image finds it, before the repository is created;
// --print-signature-policy names that file; a policy requiring more than
// nothing by default lets the pull go on, still checked.
func TestEnforceContainerSigpolicy(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 21})
	insecure := testsign.PolicyFile(t, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	t.Setenv("CONTAINERS_POLICY_JSON", insecure)
	repo := filepath.Join(t.TempDir(), "composefs")

	code, out, stderr := cfsPullIn("--print-signature-policy")
	if code != 0 || string(out) != insecure+"\n" {
		t.Errorf("--print-signature-policy: exit %d, %q %s", code, out, stderr)
	}
	for _, args := range [][]string{
		{"--print-signature-policy", "--enforce-container-sigpolicy"},
		{"--repo", repo, "--enforce-container-sigpolicy", src},
	} {
		code, out, stderr = cfsPullIn(args...)
		msg := strings.TrimSpace(stderr)
		if code != 1 || len(out) != 0 || strings.Contains(msg, "\n") ||
			!strings.Contains(msg, insecure+": default is insecureAcceptAnything") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
	}
	if _, err := os.Stat(repo); !os.IsNotExist(err) {
		t.Errorf("the refused pull left %s: %v", repo, err)
	}
	for _, args := range [][]string{
		{"--enforce-container-sigpolicy", "--insecure-policy", src},
		{"--enforce-container-sigpolicy", "--insecure-policy", "--print-signature-policy"},
		{"--enforce-container-sigpolicy", "--from-repo", "localhost/x"},
		{"--enforce-container-sigpolicy", "containers-storage:localhost/x"},
		{"--print-signature-policy", src},
	} {
		if code, _, stderr := cfsPullIn(append([]string{"--repo", repo}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s", args, code, stderr)
		}
	}

	// Rejecting by default passes the check; the image is then held to
	// the policy: refused, or accepted by its transport's scope.
	reject := testsign.PolicyFile(t, `{"default":[{"type":"reject"}]}`)
	code, _, stderr = cfsPullIn("--repo", repo, "--quiet", "--enforce-container-sigpolicy", "--signature-policy", reject, src)
	if code == 0 || !strings.Contains(stderr, "refused by the signature policy") {
		t.Errorf("a rejecting policy: exit %d\n%s", code, stderr)
	}
	acceptOCI := testsign.PolicyFile(t, `{"default":[{"type":"reject"}],"transports":{"oci":{"":[{"type":"insecureAcceptAnything"}]}}}`)
	code, out, stderr = cfsPullIn("--signature-policy", acceptOCI, "--enforce-container-sigpolicy", "--print-signature-policy")
	if code != 0 || string(out) != acceptOCI+"\n" {
		t.Errorf("--print-signature-policy with --signature-policy: exit %d, %q %s", code, out, stderr)
	}
	code, out, stderr = cfsPullIn("--repo", repo, "--quiet", "--enforce-container-sigpolicy", "--signature-policy", acceptOCI, src)
	if code != 0 {
		t.Fatalf("a policy accepting oci: exit %d\n%s", code, stderr)
	}
	readList(t, out)
}
