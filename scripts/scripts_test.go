// Package scripts holds the end-to-end tests of the shell drivers and the
// systemd units: they run the real commands against a real ostree sysroot
// on a loop-mounted XFS, with an image served by an in-process registry.
package scripts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/reflink"
)

// binDir holds the built commands and the scripts, first on PATH.
var binDir string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	dir, err := os.MkdirTemp("", "cfs-scripts-test-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	cmds := []string{"cfs-pull", "cfs-clone", "cfs-ostree-import", "cfs-status", "cfs-gc", "cfs-dedupe", "cfs-deploy"}
	var pkgs []string
	for _, c := range cmds {
		pkgs = append(pkgs, "github.com/cfs-project/cfs/cmd/"+c)
	}
	if _, err := testbin.Build(dir, pkgs...); err != nil {
		panic(err)
	}
	for _, s := range []string{"bootc-set-unified", "cfs-upgrade"} {
		data, err := os.ReadFile(s)
		if err != nil {
			panic(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s), data, 0o755); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type run struct {
	stdout, stderr string
	code           int
}

// sh runs a command with the built tools first on PATH and env added.
func sh(t testing.TB, env []string, name string, args ...string) run {
	t.Helper()
	// exec looks names up on this process's PATH, not cmd.Env's.
	if p := filepath.Join(binDir, name); !strings.Contains(name, "/") && fileExists(p) {
		name = p
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH")+":/usr/sbin:/sbin"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := run{out.String(), errb.String(), 0}
	if err != nil {
		r.code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
	}
	return r
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func must(t testing.TB, r run, what string) run {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
	return r
}

// hostFixture is an ostree host on loop XFS with one deployment of an
// image from the registry, and the kernel command line that boots it.
type hostFixture struct {
	fs               *testfs.FS
	sysroot, cmdline string
	env              []string
	reg              *testregistry.Registry
	imageRef         string // HOST/os:stable
	dir              string // scratch space on the test filesystem
}

func newHost(t *testing.T, fstype string) *hostFixture { return newHostScale(t, fstype, 1) }

// newHostScale is newHost with images of testimage Scale scale.
func newHostScale(t testing.TB, fstype string, scale int) *hostFixture {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "ostree")
	testfs.RequireTool(t, "jq")
	fs := testfs.New(t, fstype, 2<<30)
	h := &hostFixture{fs: fs, sysroot: fs.Path("sysroot"), reg: testregistry.New(t)}
	t.Cleanup(func() { unlockDeployments(h.sysroot) })
	img, err := testimage.Generate(testimage.Options{Seed: 11, Version: "1.0", UTF8Names: true, Scale: scale})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", img)
	h.imageRef = h.reg.Host + "/os:stable"

	conf := filepath.Join(t.TempDir(), "registries.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", h.reg.Host)), 0o644)
	h.env = []string{"CONTAINERS_REGISTRIES_CONF=" + conf}

	os.MkdirAll(h.sysroot, 0o755)
	must(t, sh(t, nil, "ostree", "admin", "init-fs", "--modern", h.sysroot), "ostree admin init-fs")
	must(t, sh(t, nil, "ostree", "admin", "os-init", "--sysroot="+h.sysroot, "default"), "ostree admin os-init")

	// The first deployment is installed the classic way.
	h.dir = fs.Dir
	h.deployClassic(t, img)
	h.cmdline = h.bootCmdline(t, 1)
	return h
}

// deployClassic deploys img the classic way: the image's rootfs committed
// by ostree itself (here a checkout of what the pipeline made, so /etc is
// already /usr/etc), with the image metadata bootc's classic import
// records, and an origin naming the image. The new deployment is first in
// boot order.
func (h *hostFixture) deployClassic(t testing.TB, img *testimage.Image) string {
	t.Helper()
	commit := h.commitClassic(t, img)
	must(t, sh(t, nil, "ostree", "admin", "deploy", "--sysroot="+h.sysroot, "--os=default", "--origin-file="+h.originFile(t), commit), "ostree admin deploy")
	return commit
}

// originFile is an origin naming the image, as bootc's classic deploy
// writes it.
func (h *hostFixture) originFile(t testing.TB) string {
	origin := filepath.Join(t.TempDir(), "origin")
	os.WriteFile(origin, []byte("[origin]\ncontainer-image-reference=ostree-unverified-registry:"+h.imageRef+"\n"), 0o644)
	return origin
}

// commitClassic commits img to the repository the classic way and
// returns the commit.
func (h *hostFixture) commitClassic(t testing.TB, img *testimage.Image) string {
	t.Helper()
	repo := h.sysroot + "/ostree/repo"
	pipe := fmt.Sprintf("cfs-pull --sysroot %q --quiet docker://%s | cfs-clone --to ostree --quiet --sysroot %q | cfs-ostree-import --sysroot %q --ref scratch",
		h.sysroot, h.imageRef, h.sysroot, h.sysroot)
	must(t, sh(t, h.env, "bash", "-o", "pipefail", "-c", pipe), "import of "+img.ManifestDigest.String())
	rootfs := filepath.Join(h.dir, "rootfs")
	must(t, sh(t, nil, "ostree", "checkout", "--repo="+repo, "scratch", rootfs), "ostree checkout")
	must(t, sh(t, nil, "ostree", "refs", "--repo="+repo, "--delete", "scratch"), "ostree refs --delete")
	commit := strings.TrimSpace(must(t, sh(t, nil, "ostree", "commit", "--repo="+repo, "--tree=dir="+rootfs,
		"--branch=ostree/container/image/classic", "--add-metadata-string=ostree.manifest-digest="+img.ManifestDigest.String(),
		"--add-metadata-string=ostree.container.image-config="+string(img.Config), "--add-metadata-string=version="+img.Options.Version), "ostree commit").stdout)
	os.RemoveAll(rootfs)
	return commit
}

// bootCmdline writes the options of the BLS entry with the given version
// as the kernel command line, as if that entry had been booted.
func (h *hostFixture) bootCmdline(t testing.TB, version int) string {
	t.Helper()
	entries, _ := filepath.Glob(filepath.Join(h.sysroot, "boot/loader/entries/ostree-*.conf"))
	for _, e := range entries {
		data, _ := os.ReadFile(e)
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^version %d$`, version)).Match(data) {
			continue
		}
		m := regexp.MustCompile(`(?m)^options (.*)$`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("%s has no options line", e)
		}
		f := filepath.Join(t.TempDir(), "cmdline")
		os.WriteFile(f, append(m[1], '\n'), 0o644)
		return f
	}
	t.Fatalf("no BLS entry with version %d among %v", version, entries)
	return ""
}

// unlockDeployments clears the immutable bit ostree sets on deployment
// roots, so the test's filesystem can be torn down.
func unlockDeployments(sysroot string) {
	dirs, _ := filepath.Glob(filepath.Join(sysroot, "ostree/deploy/*/deploy/*"))
	for _, d := range dirs {
		exec.Command("chattr", "-i", d).Run()
	}
}

func (h *hostFixture) status(t testing.TB) (string, map[string]any) {
	t.Helper()
	human := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", h.cmdline), "cfs-status").stdout
	raw := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", h.cmdline, "--json"), "cfs-status --json").stdout
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("cfs-status --json: %v\n%s", err, raw)
	}
	return human, doc
}

func TestSetUnifiedComposefsAndUpgrade(t *testing.T) {
	t.Run("xfs", func(t *testing.T) { testSetUnifiedAndUpgrade(t, "xfs") })
	// No reflinks on ext4: the same upgrade works by copying, and says so.
	t.Run("ext4", func(t *testing.T) { testSetUnifiedAndUpgrade(t, "ext4") })
}

func testSetUnifiedAndUpgrade(t *testing.T, fstype string) {
	h := newHost(t, fstype)
	human, _ := h.status(t)
	if !strings.Contains(human, "● Booted image: "+h.imageRef) || strings.Contains(human, "Storage:") {
		t.Fatalf("status before binding:\n%s", human)
	}

	// The upgrade path refuses an unbound host.
	r := sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline)
	if r.code != 2 || !strings.Contains(r.stderr, "bootc-set-unified composefs") {
		t.Fatalf("upgrade of an unbound host: exit %d\n%s", r.code, r.stderr)
	}

	r = must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs")
	if !strings.Contains(r.stdout, "binding enabled") || !strings.Contains(r.stdout, "reboot activates it") {
		t.Errorf("set-unified said:\n%s", r.stdout)
	}
	r = must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs again")
	if strings.TrimSpace(r.stdout) != "ostree↔composefs binding already enabled." {
		t.Errorf("second set-unified said:\n%s", r.stdout)
	}
	human, doc := h.status(t)
	if !strings.Contains(human, "Storage: ostree-composefs-bound") {
		t.Errorf("status after binding:\n%s", human)
	}
	storage := doc["status"].(map[string]any)["storage"].(map[string]any)
	if storage["ostreeComposefsBound"] != true || storage["unified"] != "disabled" {
		t.Errorf("status.storage %v", storage)
	}

	// A new release appears under the same tag; the upgrade deploys it.
	v2, err := testimage.Generate(testimage.Options{Seed: 11, Version: "2.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	r = must(t, sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline), "cfs-upgrade")
	commit := strings.TrimSpace(r.stdout)
	if len(commit) != 64 {
		t.Fatalf("cfs-upgrade printed %q", r.stdout)
	}
	show := must(t, sh(t, nil, "ostree", "show", "--repo="+h.sysroot+"/ostree/repo", "--print-metadata-key=ostree.manifest-digest", commit), "ostree show").stdout
	if !strings.Contains(show, v2.ManifestDigest.String()) {
		t.Errorf("deployed commit is of manifest %s, want %s", show, v2.ManifestDigest)
	}
	synth := sh(t, nil, "ostree", "show", "--repo="+h.sysroot+"/ostree/repo", "--print-metadata-key=ostree-ext.composefs-synthesized", commit).stdout
	if strings.TrimSpace(synth) != "true" {
		t.Errorf("the new commit is not marked composefs-synthesized: %q", synth)
	}
	switch fstype {
	case "xfs":
		if !strings.Contains(r.stderr, "objects reflinked") || strings.Contains(r.stderr, " 0 objects reflinked") {
			t.Errorf("cfs-clone reflinked nothing:\n%s", r.stderr)
		}
	case "ext4":
		if !regexp.MustCompile(`[1-9][0-9]* copied`).MatchString(r.stderr) {
			t.Errorf("cfs-clone did not report copies on ext4:\n%s", r.stderr)
		}
	}
	t.Logf("cfs-upgrade on %s:\n%s", fstype, r.stderr)
	if !strings.Contains(r.stderr, "Live images: 2 (pinned by deployments)") || !strings.Contains(r.stderr, "Objects: ") {
		t.Errorf("cfs-upgrade did not collect garbage after deploying:\n%s", r.stderr)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
	deployed, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/"+commit+".*"))
	if len(deployed) == 0 {
		t.Fatalf("no deployment of %s", commit)
	}
	if data, err := os.ReadFile(deployed[0] + ".origin"); err != nil || !strings.Contains(string(data), "container-image-reference=ostree-unverified-registry:"+h.imageRef) {
		t.Errorf("origin of the new deployment: %q %v", data, err)
	}
	// The new deployment is first in boot order; its entry keeps the
	// kernel arguments of the old one.
	oldArgs, _ := os.ReadFile(h.cmdline)
	newCmdline := h.bootCmdline(t, 2)
	newArgs, _ := os.ReadFile(newCmdline)
	if stripOstree(string(oldArgs)) != stripOstree(string(newArgs)) {
		t.Errorf("kernel arguments changed:\n old %s new %s", oldArgs, newArgs)
	}
	// The deployment's /usr is the new image's /usr.
	err = v2.ExpectedTree().CompareDir(deployed[0], testimage.CompareOptions{
		IgnoreModTime: true, // ostree commits carry mtime 0
		Xattr:         func(name string) bool { return name == "security.capability" },
		// Outside /usr a deployment is ostree's (/etc merged, /var shared);
		// /usr/etc is the image's /etc, which ostree keeps there.
		Skip: func(p string) bool { return p != "usr" && !strings.HasPrefix(p, "usr/") || p == "usr/etc" },
	})
	if err != nil {
		t.Errorf("deployment differs from the image: %v", err)
	}
	// On XFS every file object of the new commit shares its extents with
	// the composefs object it came from: check the biggest file.
	if fstype == "xfs" {
		checkShared(t, h.sysroot, filepath.Join(deployed[0], testimage.PathKernel))
	}

	// After "rebooting" into it, status shows the new image booted and the
	// old one as rollback.
	h.cmdline = newCmdline
	human, _ = h.status(t)
	if !strings.Contains(human, "● Booted image: "+h.imageRef) || !strings.Contains(human, v2.ManifestDigest.String()) || !strings.Contains(human, "Rollback image") {
		t.Errorf("status after the upgrade:\n%s", human)
	}
}

func stripOstree(cmdline string) string {
	var keep []string
	for _, f := range strings.Fields(cmdline) {
		if !strings.HasPrefix(f, "ostree=") {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

func checkShared(t *testing.T, sysroot, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shared, total, err := reflink.SharedBytes(f)
	if err != nil || total == 0 || shared != total {
		t.Errorf("%s: %d of %d bytes shared (%v)", file, shared, total, err)
	}
}

// TestFailedUpgradeDeploysNothing makes the pull fail half-way; the
// pipeline must stop before ostree admin deploy.
func TestFailedUpgradeDeploysNothing(t *testing.T) {
	h := newHost(t, "xfs")
	must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs")
	v2, err := testimage.Generate(testimage.Options{Seed: 11, Version: "2.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	top := v2.Layers[len(v2.Layers)-1]
	h.reg.Inject(testregistry.Fault{Kind: testregistry.CorruptByte, Target: top.Digest, Offset: top.Size / 2})
	before, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/*.0"))
	r := sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline)
	if r.code == 0 {
		t.Fatalf("the upgrade succeeded despite a corrupt layer:\n%s", r.stderr)
	}
	after, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/*.0"))
	if len(after) != len(before) {
		t.Errorf("a deployment appeared after a failed upgrade: %v", after)
	}
	refs := must(t, sh(t, nil, "ostree", "refs", "--repo="+h.sysroot+"/ostree/repo"), "ostree refs").stdout
	if strings.Count(refs, "ostree/container/image/") != 1 {
		t.Errorf("refs after a failed upgrade:\n%s", refs)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
}

func TestSetUnifiedOnComposefsNativeHost(t *testing.T) {
	testfs.RequireTool(t, "jq")
	root := t.TempDir()
	for _, d := range []string{"composefs", "state/deploy", "boot/loader/entries"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	r := must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", root), "set-unified on composefs-native")
	if !strings.Contains(r.stdout, "native composefs backend") || !strings.Contains(r.stdout, "no-op") {
		t.Errorf("said:\n%s", r.stdout)
	}
	if r := sh(t, nil, "bootc-set-unified", "bogus"); r.code != 2 || !strings.Contains(r.stderr, "unknown argument") {
		t.Errorf("bogus mode: exit %d %s", r.code, r.stderr)
	}
}

// TestUnitsVerify runs systemd-analyze verify on every unit, with the
// binaries installed under a temporary prefix; stderr must be empty.
func TestUnitsVerify(t *testing.T) {
	analyze := testfs.RequireTool(t, "systemd-analyze")
	dest := t.TempDir()
	units, _ := filepath.Glob("../units/*")
	if len(units) == 0 {
		t.Fatal("no units")
	}
	os.MkdirAll(filepath.Join(dest, "usr/bin"), 0o755)
	for _, s := range []string{"cfs-upgrade", "bootc-set-unified"} {
		data, _ := os.ReadFile(s)
		os.WriteFile(filepath.Join(dest, "usr/bin", s), data, 0o755)
	}
	// Units that run a command rather than a script (cfs-finalize-staged).
	data, _ := os.ReadFile(filepath.Join(binDir, "cfs-deploy"))
	os.WriteFile(filepath.Join(dest, "usr/bin", "cfs-deploy"), data, 0o755)
	var paths []string
	for _, u := range units {
		data, _ := os.ReadFile(u)
		data = bytes.ReplaceAll(data, []byte("=/usr/bin/"), []byte("="+dest+"/usr/bin/"))
		p := filepath.Join(dest, filepath.Base(u))
		os.WriteFile(p, data, 0o644)
		paths = append(paths, p)
	}
	r := sh(t, nil, analyze, append([]string{"verify", "--man=false"}, paths...)...)
	if r.code != 0 || strings.TrimSpace(r.stderr) != "" {
		t.Errorf("systemd-analyze verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
