package scripts

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testsign"
)

// treeListing is every path under root with its mode and, for files, its
// size: what "the host as it was" compares.
func treeListing(t *testing.T, root string) string {
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
		size := int64(0)
		if fi.Mode().IsRegular() {
			size = fi.Size()
		}
		fmt.Fprintf(&b, "%s %v %d\n", rel, fi.Mode(), size)
		if fi.Mode().IsRegular() && strings.HasSuffix(p, ".origin") {
			data, _ := os.ReadFile(p)
			b.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// putFile writes dir/name and returns its path.
func putFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, body)
	return p
}

// setOrigin rewrites the container-image-reference of an origin file.
func setOrigin(t *testing.T, file, ref string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "container-image-reference" {
			line = k + "=" + ref
			if strings.HasSuffix(k, " ") {
				line = k + "= " + ref
			}
		}
		out = append(out, line)
	}
	if err := os.WriteFile(file, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// refusedUpgrade runs cfs-upgrade, which must fail with one line of
// error holding every one of want and leave the sysroot as it was.
func refusedUpgrade(t *testing.T, sysroot string, env []string, want []string, args ...string) {
	t.Helper()
	before := treeListing(t, sysroot)
	r := sh(t, env, "cfs-upgrade", append([]string{"--sysroot", sysroot}, args...)...)
	msg := strings.TrimSpace(r.stderr)
	lines := strings.Split(msg, "\n")
	last := lines[len(lines)-1]
	if r.code == 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, want a refusal\n%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("error %q does not say %q", last, w)
		}
	}
	if after := treeListing(t, sysroot); after != before {
		t.Errorf("the refused upgrade changed %s:\nbefore:\n%s\nafter:\n%s", sysroot, before, after)
	}
}

// TestUpgradeSignedOrigin: an ostree host whose origin is
// ostree-image-signed: is upgraded as bootc upgrades it. A policy whose
// default accepts anything is refused before anything is pulled, the host
// left as it was; with a sigstore policy the unsigned release is refused
// and the signed one deployed, the origin kept. An unverified origin is
// upgraded under the insecure policy as before.
func TestUpgradeSignedOrigin(t *testing.T) {
	h := newHost(t, "xfs")
	must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs")
	signedRef := "ostree-image-signed:docker://" + h.imageRef
	origin := h.deployments()[0] + ".origin"
	setOrigin(t, origin, signedRef)

	v2, err := testimage.Generate(testimage.Options{Seed: 11, Version: "2.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	policies := t.TempDir()
	insecure := putFile(t, policies, "insecure.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	// Signatures live in the registry as sigstore attachments; cfs-pull
	// finds registries.d under $XDG_CONFIG_HOME/containers as podman does.
	config := t.TempDir()
	registriesD := filepath.Join(config, "containers/registries.d")
	putFile(t, registriesD, "test.yaml", "docker:\n  "+h.reg.Host+":\n    use-sigstore-attachments: true\n")
	env := append(h.env[:len(h.env):len(h.env)], "XDG_CONFIG_HOME="+config)
	withPolicy := func(p string) []string { return append(env[:len(env):len(env)], "CONTAINERS_POLICY_JSON="+p) }

	refusedUpgrade(t, h.sysroot, withPolicy(insecure), []string{"cfs-upgrade: " + insecure + ": ", "insecureAcceptAnything", "which the origin " + signedRef + " refuses"},
		"--cmdline", h.cmdline)
	refs := must(t, sh(t, nil, "ostree", "refs", "--repo="+h.sysroot+"/ostree/repo"), "ostree refs").stdout
	if strings.Count(refs, "ostree/container/image/") != 1 {
		t.Errorf("refs after a refused upgrade:\n%s", refs)
	}

	// A policy requiring a signature by a fresh key: the unsigned release
	// is refused with containers/image's reason; signed, it is deployed.
	key := testsign.NewKey(t)
	sigstorePolicy := putFile(t, policies, "sigstore.json", `{"default":[{"type":"sigstoreSigned","keyPath":"`+key.Public+`","signedIdentity":{"type":"matchRepoDigestOrExact"}}]}`)
	refusedUpgrade(t, h.sysroot, withPolicy(sigstorePolicy), []string{"refused by the signature policy", "signature was required"},
		"--cmdline", h.cmdline)
	ref := "docker://" + h.imageRef
	testsign.Copy(t, key, ref, ref, h.imageRef, &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, RegistriesDirPath: registriesD})
	r := must(t, sh(t, withPolicy(sigstorePolicy), "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline), "cfs-upgrade of the signed image")
	commit := strings.TrimSpace(r.stdout)
	deployed, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/"+commit+".*[0-9]"))
	if len(commit) != 64 || len(deployed) != 1 {
		t.Fatalf("cfs-upgrade printed %q; deployed %v\n%s", r.stdout, deployed, r.stderr)
	}
	if data, err := os.ReadFile(deployed[0] + ".origin"); err != nil || !strings.Contains(string(data), "container-image-reference="+signedRef+"\n") {
		t.Errorf("origin of the new deployment: %q %v", data, err)
	}
	show := must(t, sh(t, nil, "ostree", "show", "--repo="+h.sysroot+"/ostree/repo", "--print-metadata-key=ostree.manifest-digest", commit), "ostree show").stdout
	if !strings.Contains(show, v2.ManifestDigest.String()) {
		t.Errorf("deployed commit is of manifest %s, want %s", show, v2.ManifestDigest)
	}

	// Booted, with its origin made unverified: the insecure policy is no
	// reason to refuse, as before.
	h.cmdline = h.bootCmdline(t, 2)
	setOrigin(t, deployed[0]+".origin", "ostree-unverified-registry:"+h.imageRef)
	v3, err := testimage.Generate(testimage.Options{Seed: 11, Version: "3.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v3)
	r = must(t, sh(t, withPolicy(insecure), "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline), "cfs-upgrade of an unverified origin")
	commit = strings.TrimSpace(r.stdout)
	deployed, _ = filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/"+commit+".*[0-9]"))
	if len(deployed) != 1 {
		t.Fatalf("cfs-upgrade printed %q; deployed %v\n%s", r.stdout, deployed, r.stderr)
	}
	if data, err := os.ReadFile(deployed[0] + ".origin"); err != nil || !strings.Contains(string(data), "container-image-reference=ostree-unverified-registry:"+h.imageRef+"\n") {
		t.Errorf("origin of the unverified upgrade: %q %v", data, err)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
}

// TestNativeUpgradeSignedOrigin: bootc writes a native host's origin as
// ostree-unverified-image:, but reads ostree-image-signed: there as on an
// ostree host; such an origin is enforced as there and kept.
func TestNativeUpgradeSignedOrigin(t *testing.T) {
	h := newNativeHost(t)
	cmd1 := h.cmdline(t)
	signedRef := "ostree-image-signed:docker://" + h.imageRef
	setOrigin(t, filepath.Join(h.sysroot, "state/deploy", h.id1, h.id1+".origin"), signedRef)
	v2, err := testimage.Generate(testimage.Options{Seed: 12, Version: "2.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	policies := t.TempDir()
	insecure := putFile(t, policies, "insecure.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	withPolicy := func(p string) []string { return append(h.env[:len(h.env):len(h.env)], "CONTAINERS_POLICY_JSON="+p) }

	runBefore := treeListing(t, h.runDir)
	refusedUpgrade(t, h.sysroot, withPolicy(insecure), []string{"cfs-upgrade: " + insecure + ": ", "which the origin " + signedRef + " refuses"},
		"--cmdline", cmd1, "--run-dir", h.runDir)
	if after := treeListing(t, h.runDir); after != runBefore {
		t.Errorf("the refused upgrade changed the run directory:\n%s", after)
	}

	// Rejecting by default passes bootc's check; the registry's scope
	// accepts the image unsigned.
	accept := putFile(t, policies, "accept.json", `{"default":[{"type":"reject"}],"transports":{"docker":{"`+h.reg.Host+`":[{"type":"insecureAcceptAnything"}]}}}`)
	r := must(t, sh(t, withPolicy(accept), "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir), "cfs-upgrade")
	id2 := strings.TrimSpace(r.stdout)
	if len(id2) != 128 {
		t.Fatalf("cfs-upgrade printed %q\n%s", r.stdout, r.stderr)
	}
	expectNative(t, h.status(t, cmd1), h.id1, id2, "")
	data, err := os.ReadFile(filepath.Join(h.sysroot, "state/deploy", id2, id2+".origin"))
	if err != nil || !strings.Contains(string(data), " "+signedRef+"\n") {
		t.Errorf("origin of the staged deployment: %q %v", data, err)
	}
}

// TestNativeUpgradeUnifiedSignedOrigin: on a unified host the first leg
// of the pull, skopeo into containers-storage, is held to the same policy
// file: a policy rejecting the image stops it there, whatever policy
// skopeo would have found itself.
func TestNativeUpgradeUnifiedSignedOrigin(t *testing.T) {
	h := newNativeHost(t)
	h.makeUnified(t)
	cmd1 := h.cmdline(t)
	signedRef := "ostree-image-signed:docker://" + h.imageRef
	setOrigin(t, filepath.Join(h.sysroot, "state/deploy", h.id1, h.id1+".origin"), signedRef)
	v2, err := testimage.Generate(testimage.Options{Seed: 12, Version: "2.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	policies := t.TempDir()
	withPolicy := func(p string) []string { return append(h.env[:len(h.env):len(h.env)], "CONTAINERS_POLICY_JSON="+p) }

	reject := putFile(t, policies, "reject.json", `{"default":[{"type":"reject"}]}`)
	r := sh(t, withPolicy(reject), "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir)
	if r.code == 0 || !strings.Contains(r.stderr, "into containers-storage") || !strings.Contains(r.stderr, "rejected") {
		t.Fatalf("upgrade under a rejecting policy: exit %d\n%s", r.code, r.stderr)
	}
	expectNative(t, h.status(t, cmd1), h.id1, "", "")

	accept := putFile(t, policies, "accept.json", `{"default":[{"type":"reject"}],"transports":{"docker":{"`+h.reg.Host+`":[{"type":"insecureAcceptAnything"}]}}}`)
	r = must(t, sh(t, withPolicy(accept), "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir), "cfs-upgrade")
	id2 := strings.TrimSpace(r.stdout)
	expectNative(t, h.status(t, cmd1), h.id1, id2, "")
	data, err := os.ReadFile(filepath.Join(h.sysroot, "state/deploy", id2, id2+".origin"))
	if err != nil || !strings.Contains(string(data), " "+signedRef+"\n") {
		t.Errorf("origin of the staged deployment: %q %v", data, err)
	}
}
