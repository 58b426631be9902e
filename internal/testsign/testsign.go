// Package testsign signs test images with sigstore keys made on the spot
// and writes signature policies, for tests of policies against the real
// containers/image verification.
package testsign

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/signer"
	"go.podman.io/image/v5/signature/sigstore"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// passphrase protects every private key NewKey makes.
const passphrase = "pass"

// Key is a sigstore key pair: the files of its private and public keys.
type Key struct {
	Private, Public string
}

// NewKey makes a fresh sigstore key pair in a temporary directory of t.
func NewKey(t testing.TB) Key {
	t.Helper()
	dir := t.TempDir()
	pair, err := sigstore.GenerateKeyPair([]byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	k := Key{Private: filepath.Join(dir, "key.private"), Public: filepath.Join(dir, "key.pub")}
	if err := os.WriteFile(k.Private, pair.PrivateKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.Public, pair.PublicKey, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// Copy copies the image src to dst (transport:name references; the same
// one signs an image in place) with a sigstore signature by k claiming
// identity (a docker reference). sys is used on both sides; a registry
// keeps the signature as a sigstore attachment only if sys's
// registries.d enables use-sigstore-attachments for it.
func Copy(t testing.TB, k Key, src, dst, identity string, sys *types.SystemContext) {
	t.Helper()
	sgn, err := sigstore.NewSigner(sigstore.WithPrivateKeyFile(k.Private, []byte(passphrase)))
	if err != nil {
		t.Fatal(err)
	}
	defer sgn.Close()
	named, err := reference.ParseNormalizedNamed(identity)
	if err != nil {
		t.Fatal(err)
	}
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		t.Fatal(err)
	}
	dstRef, err := alltransports.ParseImageName(dst)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	defer policy.Destroy()
	if _, err := copy.Image(context.Background(), policy, dstRef, srcRef, &copy.Options{
		SourceCtx: sys, DestinationCtx: sys, Signers: []*signer.Signer{sgn}, SignIdentity: named,
	}); err != nil {
		t.Fatalf("signing %s into %s: %v", src, dst, err)
	}
}

// PolicyFile writes body as a containers-policy.json in a temporary
// directory of t and returns its path.
func PolicyFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
