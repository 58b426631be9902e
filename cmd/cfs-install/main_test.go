package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/install"
)

// bins holds cfs-install itself (for the kill tests) and cfs-status, the
// oracle of what an installed host looks like to the other tools.
var bins map[string]string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	dir, err := os.MkdirTemp("", "cfs-install-test-")
	if err != nil {
		panic(err)
	}
	bins, err = testbin.Build(dir, "github.com/cfs-project/cfs/cmd/cfs-install", "github.com/cfs-project/cfs/cmd/cfs-status", "github.com/cfs-project/cfs/cmd/cfs-image")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// cfsInstall runs cfs-install in process.
func cfsInstall(args ...string) result {
	code, out, errb := cliutil.RunCaptured(context.Background(), newApp(), nil, args...)
	return result{code, out, errb}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kargsFiles is an image's kargs.d: one file for this machine, one for
// another architecture (skipped), one that is not TOML by name.
func kargsFiles() map[string]string {
	other := "aarch64"
	if install.RustArch() == "aarch64" {
		other = "x86_64"
	}
	return map[string]string{
		"usr/lib/bootc/kargs.d/10-console.toml": "kargs = [\"console=ttyS0,115200\", \"quiet\"]\n",
		"usr/lib/bootc/kargs.d/20-other.toml":   "kargs = [\"other-arch-only\"]\nmatch-architectures = [\"" + other + "\"]\n",
		"usr/lib/bootc/kargs.d/30-mine.toml":    "kargs = [\"mine=1\"]\nmatch-architectures = [\"" + install.RustArch() + "\"]\n",
		"usr/lib/bootc/kargs.d/README":          "kargs = [\"not-read\"]\n",
	}
}

// target is a loop XFS mounted as the physical root to install onto,
// with an image in a registry.
type target struct {
	fs   *testfs.FS
	root string
	reg  *testregistry.Registry
	ref  string // docker://HOST/os:stable
	img  *testimage.Image
}

func newTarget(t *testing.T, fstype string, files map[string]string) *target {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "ostree")
	testfs.RequireTool(t, "blkid")
	fs := testfs.New(t, fstype, 1<<30)
	tg := &target{fs: fs, root: fs.Dir, reg: testregistry.New(t)}
	t.Cleanup(func() {
		// A killed ostree admin deploy can leave the filesystem frozen
		// (see testInstallKilled); chattr would block on it forever.
		exec.Command("fsfreeze", "--unfreeze", tg.root).Run()
		unlockDeployments(tg.root)
	})
	img, err := testimage.Generate(testimage.Options{Seed: 14, Version: "1.0", UTF8Names: true, Bootable: true, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	tg.img = img
	tg.reg.Push(t, "os", "stable", img)
	tg.ref = "docker://" + tg.reg.Host + "/os:stable"
	return tg
}

// install runs cfs-install to-filesystem onto the target with --json and
// returns the summary.
func (tg *target) install(t *testing.T, extra ...string) *install.Result {
	t.Helper()
	args := append([]string{"to-filesystem", "--tls-verify=false", "--insecure-policy", "--json"}, extra...)
	r := cfsInstall(append(args, tg.root, tg.ref)...)
	if r.code != 0 {
		t.Fatalf("cfs-install: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	return decode(t, r.stdout)
}

func decode(t *testing.T, out string) *install.Result {
	t.Helper()
	var res install.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("cfs-install --json: %v\n%s", err, out)
	}
	return &res
}

// unlockDeployments clears the immutable bit ostree sets on deployment
// roots, so the test's filesystem can be torn down.
func unlockDeployments(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, "ostree/deploy/*/deploy/*"))
	for _, d := range dirs {
		exec.Command("chattr", "-i", d).Run()
	}
}

// bootCmdline writes the options line of a BLS entry as the kernel
// command line, as if the entry had been booted.
func bootCmdline(t *testing.T, entry string) (path, options string) {
	t.Helper()
	data, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^options (.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s has no options line:\n%s", entry, data)
	}
	path = filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(path, append(m[1], '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, string(m[1])
}

func status(t *testing.T, root, cmdline string) (string, map[string]any) {
	t.Helper()
	human := run(t, bins["cfs-status"], "--sysroot", root, "--cmdline", cmdline)
	raw := run(t, bins["cfs-status"], "--sysroot", root, "--cmdline", cmdline, "--json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("cfs-status --json: %v\n%s", err, raw)
	}
	return human, doc
}

// TestInstallOstreeHost: an ostree host from the registry, with bootc's
// origin, kernel arguments (root=UUID, rw, kargs.d for this architecture,
// --karg), bound to composefs; ostree and cfs-status read it.
func TestInstallOstreeHost(t *testing.T) {
	files := kargsFiles()
	// The install configuration's kargs come before kargs.d, its
	// karg-deletes apply after kargs.d and before --karg (bootc's order).
	files["usr/lib/bootc/install/10-kargs.toml"] = "[install]\nkargs = [\"from-config\"]\nkarg-deletes = [\"quiet\"]\n"
	tg := newTarget(t, "xfs", files)
	res := tg.install(t, "--karg", "console=tty1", "--karg", "extra=\"a b\"")

	if res.HostKind != install.KindOstree || res.ManifestDigest != tg.img.ManifestDigest.String() || len(res.Commit) != 64 || res.Storage != "disabled" {
		t.Fatalf("summary %+v", res)
	}
	uuid := strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", tg.fs.Loop))
	wantKargs := []string{"root=UUID=" + uuid, "rw", "from-config", "console=ttyS0,115200", "mine=1", "console=tty1", `extra="a b"`}
	if strings.Join(res.Kargs, " ") != strings.Join(wantKargs, " ") {
		t.Errorf("kargs %q, want %q", res.Kargs, wantKargs)
	}
	if len(res.BootEntries) != 1 {
		t.Fatalf("entries %v", res.BootEntries)
	}
	var phases []string
	for _, p := range res.Phases {
		if p.Elapsed <= 0 {
			t.Errorf("phase %s took %v", p.Name, p.Elapsed)
		}
		phases = append(phases, p.Name)
	}
	if strings.Join(phases, " ") != "pull ostree-init synthesize deploy" {
		t.Errorf("phases %v", phases)
	}
	cmdline, options := bootCmdline(t, res.BootEntries[0])
	if !strings.HasPrefix(options, strings.Join(wantKargs, " ")+" ostree=/ostree/boot.") {
		t.Errorf("entry options %q", options)
	}

	// ostree's own view.
	st := run(t, "ostree", "admin", "status", "--sysroot="+tg.root)
	if !strings.Contains(st, "default "+res.Commit+".0") {
		t.Errorf("ostree admin status does not list %s:\n%s", res.Commit, st)
	}
	run(t, "ostree", "fsck", "--repo="+tg.root+"/ostree/repo")
	for key, want := range map[string]string{"sysroot.bootloader": "none", "sysroot.bootprefix": "true", "sysroot.readonly": "true", "composefs.unified": "true"} {
		if got := strings.TrimSpace(run(t, "ostree", "config", "--repo="+tg.root+"/ostree/repo", "get", key)); got != want {
			t.Errorf("ostree config %s = %q, want %q", key, got, want)
		}
	}
	origin, err := os.ReadFile(res.Deployment + ".origin")
	wantOrigin := "[origin]\ncontainer-image-reference=ostree-unverified-registry:" + strings.TrimPrefix(tg.ref, "docker://") + "\n"
	if err != nil || string(origin) != wantOrigin {
		t.Errorf("origin %q (%v), want %q", origin, err, wantOrigin)
	}
	// The composefs repository is bootc's: 0700, SHA-512, the image tagged.
	if fi, err := os.Stat(filepath.Join(tg.root, "composefs")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("composefs/: %v %v", fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(tg.root, "composefs/streams/refs/oci/localhost%2Fbootc-"+res.ManifestDigest)); err != nil {
		t.Errorf("no bootc tag: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tg.root, "composefs/bootc.json")); err == nil {
		t.Errorf("bootc.json written with storage disabled")
	}

	// bootc's install provenance, canonical JSON of the installed image.
	var aleph map[string]any
	if data, err := os.ReadFile(filepath.Join(tg.root, ".bootc-aleph.json")); err != nil {
		t.Error(err)
	} else if err := json.Unmarshal(data, &aleph); err != nil {
		t.Errorf(".bootc-aleph.json: %v\n%s", err, data)
	} else if name := strings.TrimPrefix(tg.ref, "docker://"); aleph["image"] != name || aleph["target-image"] != name ||
		aleph["digest"] != res.ManifestDigest || aleph["version"] != "1.0" || aleph["timestamp"] != nil ||
		aleph["selinux"] == nil || aleph["kernel"] == "" || aleph["labels"].(map[string]any)["containers.bootc"] != "1" || data[len(data)-1] != '}' {
		t.Errorf(".bootc-aleph.json: %s", data)
	}

	// cfs-status, booted from the entry written.
	human, doc := status(t, tg.root, cmdline)
	booted, _ := doc["status"].(map[string]any)["booted"].(map[string]any)
	image, _ := booted["image"].(map[string]any)
	if image["imageDigest"] != res.ManifestDigest {
		t.Errorf("cfs-status booted image %v, want %s\n%s", image, res.ManifestDigest, human)
	}
	if !strings.Contains(human, "Storage: ostree-composefs-bound") || !strings.Contains(human, strings.TrimPrefix(tg.ref, "docker://")) {
		t.Errorf("cfs-status:\n%s", human)
	}
}

// TestInstallRefusesNonEmptyRoot: nothing is written to a root that
// holds anything, and the error says what.
func TestInstallRefusesNonEmptyRoot(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "stray"), []byte("x"), 0o644)
	r := cfsInstall("to-filesystem", "--insecure-policy", root, "oci:/nonexistent:latest")
	if r.code != 1 || !strings.Contains(r.stderr, "holds stray") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Errorf("root now holds %v", ents)
	}
	if r := cfsInstall("to-filesystem", root); r.code != 2 {
		t.Errorf("one argument: exit %d", r.code)
	}
	if r := cfsInstall("to-filesystem", "--bootloader", "lilo", root, "oci:/x"); r.code != 2 {
		t.Errorf("--bootloader lilo: exit %d", r.code)
	}
}
