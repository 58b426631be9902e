package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testsign"
)

// listing is every path under root with its type and size: what "ROOT
// as it was" compares.
func listing(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b.WriteString(rel + " " + fi.Mode().String() + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// refused runs an install that must fail with one line holding every
// one of want, and leave ROOT as it was.
func (tg *target) refused(t *testing.T, want []string, args ...string) {
	t.Helper()
	before := listing(t, tg.root)
	r := cfsInstall(append(append([]string{"to-filesystem", "--tls-verify=false", "--quiet"}, args...), tg.root, tg.ref)...)
	msg := strings.TrimSpace(r.stderr)
	if r.code == 0 || strings.Contains(msg, "\n") {
		t.Fatalf("exit %d, want one line of error, got %q", r.code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if after := listing(t, tg.root); after != before {
		t.Errorf("ROOT changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

const (
	insecureDefault = `{"default":[{"type":"insecureAcceptAnything"}]}`
	rejectDefault   = `{"default":[{"type":"reject"}]}`
)

// acceptRegistry rejects by default and accepts the test registry
// unsigned: what bootc's check lets through (it judges the default only).
func acceptRegistry(tg *target) string {
	return `{"default":[{"type":"reject"}],"transports":{"docker":{"` + strings.TrimPrefix(tg.ref, "docker://") + `":[{"type":"insecureAcceptAnything"}]}}}`
}

// TestEnforceContainerSigpolicy: --enforce-container-sigpolicy refuses a
// policy accepting anything by default before ROOT is written, the pull
// is held to the policy with or without it, and an accepted install gets
// bootc's signed origin.
func TestEnforceContainerSigpolicy(t *testing.T) {
	tg := newTarget(t, "xfs", nil)
	insecure := testsign.PolicyFile(t, insecureDefault)
	tg.refused(t, []string{insecure, "insecureAcceptAnything", "--enforce-container-sigpolicy"},
		"--enforce-container-sigpolicy", "--signature-policy", insecure)
	reject := testsign.PolicyFile(t, rejectDefault)
	for _, flags := range [][]string{{"--enforce-container-sigpolicy"}, nil} {
		tg.refused(t, []string{"refused by the signature policy", "is rejected by policy"},
			append(flags, "--signature-policy", reject)...)
	}
	if r := cfsInstall("to-filesystem", "--enforce-container-sigpolicy", "--insecure-policy", tg.root, tg.ref); r.code != 2 || !strings.Contains(r.stderr, "--insecure-policy") {
		t.Errorf("with --insecure-policy: exit %d, stderr %q", r.code, r.stderr)
	}

	// A policy requiring a sigstore signature by our key: the unsigned
	// image is refused with containers/image's reason, a copy signed
	// with the key (in a dir: layout) installs.
	name := strings.TrimPrefix(tg.ref, "docker://")
	signed, pub := signedCopy(t, tg.ref, name)
	accept := testsign.PolicyFile(t, `{"default":[{"type":"sigstoreSigned","keyPath":"`+pub+
		`","signedIdentity":{"type":"exactReference","dockerReference":"`+name+`"}}]}`)
	tg.refused(t, []string{"refused by the signature policy", "signature was required"},
		"--enforce-container-sigpolicy", "--signature-policy", accept)
	r := cfsInstall("to-filesystem", "--json", "--enforce-container-sigpolicy", "--signature-policy", accept, "--source-imgref", tg.ref, "--host-config-root", t.TempDir(), tg.root, signed)
	if r.code != 0 {
		t.Fatalf("cfs-install: exit %d\n%s", r.code, r.stderr)
	}
	res := decode(t, r.stdout)
	if res.SignaturePolicy != accept {
		t.Errorf("signaturePolicy %q, want %q", res.SignaturePolicy, accept)
	}
	origin, err := os.ReadFile(res.Deployment + ".origin")
	if want := "container-image-reference=ostree-image-signed:" + tg.ref + "\n"; err != nil || !strings.Contains(string(origin), want) {
		t.Errorf("origin %q (%v), want it to hold %q", origin, err, want)
	}
	// bootc status (and cfs-status) show the spec's signature as
	// containerPolicy.
	cmdline, _ := bootCmdline(t, res.BootEntries[0])
	_, doc := status(t, tg.root, cmdline)
	spec, _ := doc["spec"].(map[string]any)
	if img, _ := spec["image"].(map[string]any); img["signature"] != "containerPolicy" {
		t.Errorf("cfs-status spec.image %v, want signature containerPolicy", spec["image"])
	}
}

// TestInstallConfigChecksAfterPull: the image's install configuration is
// read after the pull; [install] enforce-container-sigpolicy = true alone
// turns enforcement on, and a refusal or a bad value there removes the
// pulled repository again, leaving ROOT as it was.
func TestInstallConfigChecksAfterPull(t *testing.T) {
	frag := "usr/lib/bootc/install/50-sigpolicy.toml"
	tg := newTarget(t, "xfs", map[string]string{frag: "[install]\nenforce-container-sigpolicy = true\n"})
	insecure := testsign.PolicyFile(t, insecureDefault)
	tg.refused(t, []string{insecure, "insecureAcceptAnything", "image:/" + frag}, "--signature-policy", insecure)

	bad, err := testimage.Generate(testimage.Options{Seed: 14, Version: "1.0", Bootable: true,
		Files: map[string]string{"usr/lib/bootc/install/20-bootloader.toml": "[install]\nbootloader = \"lilo\"\n"}})
	if err != nil {
		t.Fatal(err)
	}
	tg.reg.Push(t, "os", "bad", bad)
	good := tg.ref
	tg.ref = strings.TrimSuffix(good, ":stable") + ":bad"
	for _, flags := range [][]string{nil, {"--composefs-native"}} {
		tg.refused(t, []string{"image:/usr/lib/bootc/install/20-bootloader.toml", `install.bootloader: "lilo"`},
			append(flags, "--insecure-policy")...)
	}
	tg.ref = good

	r := cfsInstall("to-filesystem", "--tls-verify=false", "--json", "--signature-policy", testsign.PolicyFile(t, acceptRegistry(tg)), tg.root, tg.ref)
	if r.code != 0 {
		t.Fatalf("cfs-install: exit %d\n%s", r.code, r.stderr)
	}
	res := decode(t, r.stdout)
	origin, err := os.ReadFile(res.Deployment + ".origin")
	if want := "container-image-reference=ostree-image-signed:" + tg.ref + "\n"; err != nil || !strings.Contains(string(origin), want) {
		t.Errorf("origin %q (%v), want it to hold %q", origin, err, want)
	}

	// print-configuration shows the key.
	if r := cfsInstall("print-configuration", "--root", res.Deployment); r.code != 0 || !strings.Contains(r.stdout, `"enforce-container-sigpolicy":true`) {
		t.Errorf("print-configuration: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// signedCopy copies ref into a dir: layout with a sigstore signature
// claiming identity, made with a fresh key; it returns the copy and the
// public key's file.
func signedCopy(t *testing.T, ref, identity string) (string, string) {
	t.Helper()
	key := testsign.NewKey(t)
	signed := "dir:" + filepath.Join(t.TempDir(), "signed")
	testsign.Copy(t, key, ref, signed, identity, &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue})
	return signed, key.Public
}
