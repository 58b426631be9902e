package scripts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/nativehost"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// nativeFixture is a composefs-native host on loop XFS, installed with
// lib/nativehost from an image pulled from the test registry by cfs-pull.
type nativeFixture struct {
	fs                        *testfs.FS
	sysroot, runDir, imageRef string
	env                       []string
	reg                       *testregistry.Registry
	id1                       string
}

func newNativeHost(t *testing.T) *nativeFixture {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "jq")
	fs := testfs.XFS(t, 2<<30)
	h := &nativeFixture{fs: fs, sysroot: fs.Path("sysroot"), runDir: t.TempDir(), reg: testregistry.New(t)}
	img, err := testimage.Generate(testimage.Options{Seed: 12, Version: "1.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", img)
	h.imageRef = h.reg.Host + "/os:stable"
	conf := filepath.Join(t.TempDir(), "registries.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", h.reg.Host)), 0o644)
	h.env = []string{"CONTAINERS_REGISTRIES_CONF=" + conf}
	os.MkdirAll(h.sysroot, 0o755)
	must(t, sh(t, h.env, "cfs-pull", "--sysroot", h.sysroot, "--quiet", "--output", "none", "docker://"+h.imageRef), "cfs-pull")
	repo, err := composefs.Open(filepath.Join(h.sysroot, "composefs"))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	im, err := nativehost.ResolveImage(repo, img.ManifestDigest.String(), "ostree-unverified-image:docker://"+h.imageRef)
	if err != nil {
		t.Fatal(err)
	}
	d, err := (&nativehost.Host{Root: h.sysroot}).Install(im, []string{"root=UUID=0c3f", "rw"})
	if err != nil {
		t.Fatal(err)
	}
	h.id1 = d.ID
	return h
}

// cmdline writes the options of the first entry as the kernel command
// line: what booting the host now would put there.
func (h *nativeFixture) cmdline(t *testing.T) string {
	t.Helper()
	entries, _ := filepath.Glob(filepath.Join(h.sysroot, "boot/loader/entries/*.conf"))
	best, bestKey := "", ""
	for _, e := range entries {
		data, _ := os.ReadFile(e)
		key, opts := "", ""
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "sort-key "); ok {
				key = v
			}
			if v, ok := strings.CutPrefix(line, "options "); ok {
				opts = v
			}
		}
		if best == "" || key < bestKey {
			best, bestKey = opts, key
		}
	}
	if best == "" {
		t.Fatalf("no entry under %s/boot/loader/entries", h.sysroot)
	}
	f := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(f, []byte(best+"\n"), 0o644)
	return f
}

func (h *nativeFixture) status(t *testing.T, cmdline string) map[string]any {
	t.Helper()
	out := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", cmdline, "--run-dir", h.runDir, "--json"), "cfs-status --json").stdout
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// slot is status.<name>.composefs.verity, "" for none.
func slot(st map[string]any, name string) string {
	s, _ := st["status"].(map[string]any)
	e, _ := s[name].(map[string]any)
	c, _ := e["composefs"].(map[string]any)
	v, _ := c["verity"].(string)
	return v
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	if v == "" {
		return "<none>"
	}
	return v
}

func expectNative(t *testing.T, st map[string]any, booted, staged, rollback string) {
	t.Helper()
	if slot(st, "booted") != booted || slot(st, "staged") != staged || slot(st, "rollback") != rollback {
		t.Fatalf("booted %s staged %s rollback %s, want %s %s %s", short(slot(st, "booted")), short(slot(st, "staged")),
			short(slot(st, "rollback")), short(booted), short(staged), short(rollback))
	}
}

// TestNativeUpgrade: cfs-upgrade on a composefs-native host stages the
// new release as bootc does, finalizes it with --apply-now (local /etc
// changes carried over), and --rollback swaps the order back.
func TestNativeUpgrade(t *testing.T) {
	h := newNativeHost(t)
	cmd1 := h.cmdline(t)
	expectNative(t, h.status(t, cmd1), h.id1, "", "")
	if r := sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir); r.code != 0 ||
		strings.TrimSpace(r.stdout) != "No update available." {
		t.Fatalf("upgrade to the booted image: exit %d %q %s", r.code, r.stdout, r.stderr)
	}

	v2, err := testimage.Generate(testimage.Options{Seed: 12, Version: "2.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	etc1 := filepath.Join(h.sysroot, "state/deploy", h.id1, "etc")
	os.WriteFile(filepath.Join(etc1, "hostname"), []byte("native-1\n"), 0o644)

	// bootc's upgrade --download-only: staged, locked, left alone by
	// --apply-now's finalize until --from-downloaded.
	if r := sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--from-downloaded"); r.code == 0 ||
		!strings.Contains(r.stderr, "No staged deployment found") {
		t.Errorf("--from-downloaded with nothing staged: exit %d %s", r.code, r.stderr)
	}
	r := must(t, sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--download-only"), "cfs-upgrade --download-only")
	id2 := strings.TrimSpace(r.stdout)
	if len(id2) != 128 {
		t.Fatalf("cfs-upgrade printed %q, want the new deployment id", r.stdout)
	}
	expectNative(t, h.status(t, cmd1), h.id1, id2, "")
	stagedFile := filepath.Join(h.runDir, "composefs/staged-deployment")
	staged, err := os.ReadFile(stagedFile)
	if err != nil || string(staged) != `{"depl_id":"`+id2+`","finalization_locked":true}` {
		t.Errorf("staged-deployment: %q %v", staged, err)
	}
	human := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir), "cfs-status").stdout
	if !strings.Contains(human, "  Staged image: "+h.imageRef+"\n") || !strings.Contains(human, "● Booted image: "+h.imageRef+"\n") ||
		strings.Contains(human, "Download-only") {
		t.Errorf("cfs-status:\n%s", human)
	}
	if verbose := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--verbose"), "cfs-status --verbose").stdout; !strings.Contains(verbose, "Download-only: yes\n") {
		t.Errorf("cfs-status --verbose:\n%s", verbose)
	}
	must(t, sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--apply-now"), "--apply-now of a locked staging")
	expectNative(t, h.status(t, cmd1), h.id1, id2, "")
	r = must(t, sh(t, nil, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--from-downloaded"), "--from-downloaded")
	if strings.TrimSpace(r.stdout) != id2 {
		t.Errorf("--from-downloaded printed %q", r.stdout)
	}
	if staged, err := os.ReadFile(stagedFile); err != nil || string(staged) != `{"depl_id":"`+id2+`","finalization_locked":false}` {
		t.Errorf("staged-deployment after --from-downloaded: %q %v", staged, err)
	}
	if st := h.status(t, cmd1); st["status"].(map[string]any)["staged"].(map[string]any)["downloadOnly"] != false {
		t.Errorf("staged after unlock: %v", st["status"].(map[string]any)["staged"])
	}
	if r := sh(t, nil, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--from-downloaded"); r.code != 0 ||
		strings.TrimSpace(r.stdout) != "Staged deployment is present and not in download only mode." {
		t.Errorf("--from-downloaded twice: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	// The same image again: nothing new is staged.
	if r := sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir); r.code != 0 ||
		strings.TrimSpace(r.stdout) != "Staged update present, not changed." {
		t.Fatalf("second upgrade: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	// --apply-now finalizes the staged deployment at once.
	if r := sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--apply-now"); r.code != 0 {
		t.Fatalf("--apply-now: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	cmd2 := h.cmdline(t)
	if data, _ := os.ReadFile(cmd2); !strings.Contains(string(data), "composefs="+id2) {
		t.Fatalf("the first entry boots %s, want %s", data, short(id2))
	}
	expectNative(t, h.status(t, cmd2), id2, "", h.id1)
	if got, _ := os.ReadFile(filepath.Join(h.sysroot, "state/deploy", id2, "etc/hostname")); string(got) != "native-1\n" {
		t.Errorf("hostname set on 1 is %q on 2", got)
	}
	if got, _ := os.ReadFile(filepath.Join(h.sysroot, "state/deploy", id2, "etc/motd")); string(got) != "Welcome to cfs-test 2.0\n" {
		t.Errorf("motd on 2 is %q", got)
	}

	must(t, sh(t, nil, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd2, "--run-dir", h.runDir, "--rollback"), "cfs-upgrade --rollback")
	st := h.status(t, cmd2)
	expectNative(t, st, id2, "", h.id1)
	if q, _ := st["status"].(map[string]any)["rollbackQueued"].(bool); !q {
		t.Error("rollbackQueued is false after --rollback")
	}
	if data, _ := os.ReadFile(h.cmdline(t)); !strings.Contains(string(data), "composefs="+h.id1) {
		t.Errorf("after --rollback the first entry boots %s", data)
	}

	// Still booted into 2, upgrade to 3: its entries replace 1's, whose
	// deployment and image go (its kernel directory stays: release 2 has
	// the same kernel, and its entry boots from there).
	v3, err := testimage.Generate(testimage.Options{Seed: 13, Version: "3.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v3)
	r = must(t, sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd2, "--run-dir", h.runDir, "--apply-now"), "upgrade to 3")
	id3 := strings.TrimSpace(r.stdout)
	expectNative(t, h.status(t, h.cmdline(t)), id3, "", id2)
	for _, p := range []string{"state/deploy/" + h.id1, "composefs/images/" + h.id1} {
		if _, err := os.Lstat(filepath.Join(h.sysroot, p)); !os.IsNotExist(err) {
			t.Errorf("%s is still there after release 1 left the entries (%v)", p, err)
		}
	}
	for _, p := range []string{"state/deploy/" + id2, "composefs/images/" + id2, "state/deploy/" + id3, "composefs/images/" + id3, "boot/bootc_composefs-" + h.id1} {
		if _, err := os.Lstat(filepath.Join(h.sysroot, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestFinalizeUnitUnderSystemd stages a deployment inside a systemd
// container, starts cfs-finalize-staged.service as cfs-upgrade does, and
// powers the container off: the unit's ExecStop must finalize at shutdown
// (entries swapped, /etc merged) with the sysroot still mounted.
func TestFinalizeUnitUnderSystemd(t *testing.T) {
	nspawn := testfs.RequireTool(t, "systemd-nspawn")
	nsenter := testfs.RequireTool(t, "nsenter")
	h := newNativeHost(t)
	v2, err := testimage.Generate(testimage.Options{Seed: 12, Version: "2.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "v2", v2)
	must(t, sh(t, h.env, "cfs-pull", "--sysroot", h.sysroot, "--quiet", "--output", "none", "docker://"+h.reg.Host+"/os:v2"), "cfs-pull v2")
	os.WriteFile(filepath.Join(h.sysroot, "state/deploy", h.id1, "etc/hostname"), []byte("before-shutdown\n"), 0o644)

	const prefix = "/run/cfs-test"
	files := t.TempDir()
	copyFile(t, h.cmdline(t), filepath.Join(files, "cmdline"))
	units := t.TempDir()
	unit, err := os.ReadFile("../units/cfs-finalize-staged.service")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(units, "cfs-finalize-staged.service"), strings.ReplaceAll(string(unit), "=/usr/bin/", "="+prefix+"/bin/"))
	// The container's kernel command line boots nothing and its /etc is
	// the host's: say which deployment is booted and which etc is its.
	writeFile(t, filepath.Join(units, "cfs-finalize-staged.service.d", "test.conf"), fmt.Sprintf(`[Unit]
RequiresMountsFor=%[1]s/bin %[1]s/files
[Service]
ExecStop=
ExecStop=%[1]s/bin/cfs-deploy --cmdline %[1]s/files/cmdline finalize --etc /sysroot/state/deploy/%[2]s/etc
`, prefix, h.id1))

	c := bootContainer(t, nspawn, nsenter,
		"--bind="+h.sysroot+":/sysroot",
		"--bind-ro="+binDir+":"+prefix+"/bin",
		"--bind-ro="+files+":"+prefix+"/files",
		"--bind-ro="+units+":/etc/systemd/system")
	r := must(t, c.run(t, prefix+"/bin/cfs-deploy", "--cmdline", prefix+"/files/cmdline", "stage",
		"--imgref", "ostree-unverified-image:docker://"+h.reg.Host+"/os:v2", v2.ManifestDigest.String()), "cfs-deploy stage")
	id2 := strings.TrimSpace(r.stdout)
	must(t, c.run(t, "systemctl", "start", "cfs-finalize-staged.service"), "systemctl start cfs-finalize-staged.service")
	if show := c.run(t, "systemctl", "show", "-p", "ActiveState", "cfs-finalize-staged.service").stdout; !strings.Contains(show, "ActiveState=active") {
		t.Fatalf("cfs-finalize-staged.service: %s", show)
	}
	// Nothing is finalized before shutdown.
	if _, err := os.Stat(filepath.Join(h.sysroot, "boot/loader/entries.staged")); err != nil {
		t.Fatalf("entries.staged before shutdown: %v", err)
	}
	c.run(t, "systemctl", "poweroff")
	deadline := time.Now().Add(60 * time.Second)
	for fileExists(fmt.Sprintf("/proc/%d", c.pid)) {
		if time.Now().After(deadline) {
			t.Fatal("the container did not power off in 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(h.sysroot, "boot/loader/entries.staged")); !os.IsNotExist(err) {
		t.Errorf("entries.staged still there after shutdown (%v): the unit did not finalize", err)
	}
	if data, _ := os.ReadFile(h.cmdline(t)); !strings.Contains(string(data), "composefs="+id2) {
		t.Errorf("after shutdown the first entry boots %s, want %s", data, short(id2))
	}
	if got, _ := os.ReadFile(filepath.Join(h.sysroot, "state/deploy", id2, "etc/hostname")); string(got) != "before-shutdown\n" {
		t.Errorf("hostname on 2 after finalize: %q", got)
	}
}

// makeUnified marks the host unified as bootc-set-unified full leaves a
// native host: bootc.json, and bootc's containers-storage under
// composefs/bootc, reached through ostree/bootc.
func (h *nativeFixture) makeUnified(t *testing.T) {
	t.Helper()
	testfs.RequireTool(t, "skopeo")
	if err := os.MkdirAll(filepath.Join(h.sysroot, "composefs/bootc"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(h.sysroot, "ostree"), 0o755)
	if err := os.Symlink("../composefs/bootc", filepath.Join(h.sysroot, "ostree/bootc")); err != nil {
		t.Fatal(err)
	}
	if err := sysroot.WriteBootcJSON(h.sysroot, sysroot.UnifiedEnabled); err != nil {
		t.Fatal(err)
	}
}

// TestNativeUpgradeUnified: on a unified native host (bootc.json) the new
// release goes into bootc's containers-storage (composefs/bootc/storage,
// reached through ostree/bootc) first and into composefs from there, as on
// an ostree host, before it is staged; podman runs it from that store.
func TestNativeUpgradeUnified(t *testing.T) {
	h := newNativeHost(t)
	h.makeUnified(t)
	cmd1 := h.cmdline(t)
	human := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", cmd1), "cfs-status").stdout
	if !strings.Contains(human, "Storage: unified (enabled)") {
		t.Fatalf("cfs-status on a unified native host:\n%s", human)
	}
	v2, err := testimage.Generate(testimage.Options{Seed: 12, Version: "2.0", UTF8Names: true, Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	r := must(t, sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", cmd1, "--run-dir", h.runDir, "--apply-now"), "cfs-upgrade")
	id2 := strings.TrimSpace(r.stdout)
	expectNative(t, h.status(t, h.cmdline(t)), id2, "", h.id1)
	graph := filepath.Join(h.sysroot, "composefs/bootc/storage")
	if _, err := os.Stat(filepath.Join(graph, "overlay-images")); err != nil {
		t.Fatalf("no containers-storage under composefs/bootc: %v", err)
	}
	if out := podmanRun(t, graph, v2.ConfigDigest.Encoded(), "/usr/lib/os-release"); !strings.Contains(out, "VERSION_ID=2.0") {
		t.Errorf("podman run of release 2 from bootc's store printed %q", out)
	}
}

// TestNativeUpgradeUKIKey: a sealed-UKI host with systemd-boot. The
// staged entry's key is decided as at install (bootc's
// EFIKey::for_bootloader on every write): "uki" when bootctl is systemd
// 258 or later, "efi" before; --uki-key forces one. The booted entry,
// demoted, keeps its own key.
func TestNativeUpgradeUKIKey(t *testing.T) {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "jq")
	testfs.RequireTool(t, "objcopy")
	testfs.RequireFile(t, testimage.UKIStub, "systemd-boot-efi")
	fs := testfs.XFS(t, 2<<30)
	esp := testfs.Tmpfs(t, 64<<20)
	root, runDir, reg := fs.Path("sysroot"), t.TempDir(), testregistry.New(t)
	os.MkdirAll(root, 0o755)
	conf := filepath.Join(t.TempDir(), "registries.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", reg.Host)), 0o644)
	// A bootctl that says systemd 258.
	fake := t.TempDir()
	os.WriteFile(filepath.Join(fake, "bootctl"), []byte("#!/bin/sh\necho 'systemd 258 (258.1-1)'\n"), 0o755)
	env := []string{"CONTAINERS_REGISTRIES_CONF=" + conf, "PATH=" + fake + ":" + binDir + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}
	ref := reg.Host + "/os:stable"

	repoOpen := func() *composefs.Repository {
		repo, err := composefs.Open(filepath.Join(root, "composefs"))
		if err != nil {
			t.Fatal(err)
		}
		return repo
	}
	// sealed pushes release version with a UKI sealed for its boot
	// image (the plain image's: /boot leaves the boot image as it is).
	sealed := func(version string) (string, string) {
		opts := testimage.Options{Seed: 21, Version: version, UTF8Names: true, Bootable: true}
		plain, err := testimage.Generate(opts)
		if err != nil {
			t.Fatal(err)
		}
		reg.Push(t, "os", "plain-"+version, plain)
		must(t, sh(t, env, "cfs-pull", "--sysroot", root, "--quiet", "--output", "none", "docker://"+reg.Host+"/os:plain-"+version), "cfs-pull plain")
		repo := repoOpen()
		im, err := nativehost.ResolveImage(repo, plain.ManifestDigest.String(), "ostree-unverified-image:docker://"+ref)
		repo.Close()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%x", im.ID)
		if opts.UKI, err = testimage.SealedUKI(t.TempDir(), opts, id); err != nil {
			t.Fatal(err)
		}
		img, err := testimage.Generate(opts)
		if err != nil {
			t.Fatal(err)
		}
		reg.Push(t, "os", "stable", img)
		return id, img.ManifestDigest.String()
	}
	id1, digest1 := sealed("1.0")
	must(t, sh(t, env, "cfs-pull", "--sysroot", root, "--quiet", "--output", "none", "docker://"+ref), "cfs-pull")
	repo := repoOpen()
	im, err := nativehost.ResolveImage(repo, digest1, "ostree-unverified-image:docker://"+ref)
	if err != nil {
		t.Fatal(err)
	}
	// Installed by an older systemd: efi.
	if _, err := (&nativehost.Host{Root: root, ESP: esp.Dir, Bootloader: nativehost.Systemd, UKIKey: nativehost.KeyEfi}).Install(im, nil); err != nil {
		t.Fatal(err)
	}
	repo.Close()
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmdline, []byte("composefs="+id1+" rw\n"), 0o644)
	id2, _ := sealed("2.0")
	args := []string{"--sysroot", root, "--cmdline", cmdline, "--run-dir", runDir, "--esp", esp.Dir}
	entry := func(name string) string {
		data, err := os.ReadFile(filepath.Join(esp.Dir, "loader/entries.staged", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	demoted := "efi /EFI/Linux/bootc/bootc_composefs-" + id1 + ".efi\n"

	// --uki-key wins over bootctl.
	r := must(t, sh(t, env, "cfs-upgrade", append(args, "--uki-key", "efi")...), "cfs-upgrade --uki-key efi")
	if strings.TrimSpace(r.stdout) != id2 {
		t.Fatalf("staged %q, want %s", r.stdout, short(id2))
	}
	if e := entry("bootc_cfs-2.0-1.conf"); !strings.Contains(e, "\nefi /EFI/Linux/bootc/bootc_composefs-"+id2+".efi\n") {
		t.Errorf("staged entry with --uki-key efi:\n%s", e)
	}
	// A reboot without finalize: /run forgets the staging, so (as for
	// bootc) nothing is staged and the next upgrade stages again, now
	// without the flag: bootctl 258 makes the key "uki"; the demoted
	// booted entry keeps "efi".
	if err := os.RemoveAll(filepath.Join(runDir, "composefs")); err != nil {
		t.Fatal(err)
	}
	st := must(t, sh(t, nil, "cfs-status", "--sysroot", root, "--cmdline", cmdline, "--run-dir", runDir, "--esp", esp.Dir, "--json"), "cfs-status").stdout
	if staged := stagedOf(t, st); staged != "" {
		t.Errorf("staged %s after a reboot without finalize", short(staged))
	}
	r = must(t, sh(t, env, "cfs-upgrade", args...), "cfs-upgrade after the reboot")
	if strings.TrimSpace(r.stdout) != id2 {
		t.Fatalf("staged %q, want %s", r.stdout, short(id2))
	}
	if e := entry("bootc_cfs-2.0-1.conf"); !strings.Contains(e, "\nuki /EFI/Linux/bootc/bootc_composefs-"+id2+".efi\n") {
		t.Errorf("staged entry with bootctl 258:\n%s", e)
	}
	if e := entry("bootc_cfs-1.0-0.conf"); !strings.Contains(e, "\n"+demoted) {
		t.Errorf("demoted entry:\n%s", e)
	}
	if r := sh(t, env, "cfs-upgrade", append(args, "--uki-key", "bls")...); r.code != 2 || !strings.Contains(r.stderr, "--uki-key 'bls'") {
		t.Errorf("--uki-key bls: exit %d %s", r.code, r.stderr)
	}
	must(t, sh(t, env, "cfs-upgrade", append(args, "--apply-now")...), "cfs-upgrade --apply-now")
	testfs.CheckFATSafe(t, esp.Dir)
}

func stagedOf(t *testing.T, out string) string {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	return slot(st, "staged")
}
