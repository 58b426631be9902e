package sysroot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

var (
	imgA = sysroottest.Image{Ref: "ostree-unverified-registry:quay.io/example/someimage:latest", Architecture: "arm64",
		Version: "nightly", Created: time.Date(2023, 10, 14, 19, 22, 15, 0, time.UTC)}
	imgB = sysroottest.Image{Ref: "ostree-unverified-image:docker://quay.io/example/someimage:v1", Architecture: "arm64"}
	imgC = sysroottest.Image{Ref: "ostree-unverified-image:containers-storage:localhost/derived", Architecture: "amd64"}
)

func load(t *testing.T, h *sysroottest.Host, cmdline string) *sysroot.Host {
	t.Helper()
	host, err := sysroot.Load(h.Root, sysroot.Options{Cmdline: cmdline, RunDir: h.RunDir})
	if err != nil {
		t.Fatal(err)
	}
	return host
}

func TestOstreeHost(t *testing.T) {
	h := sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}}, 0)
	host := load(t, h, h.Cmdline)
	if host.Kind != sysroot.KindOstree {
		t.Fatalf("kind %s", host.Kind)
	}
	if host.Booted == nil || host.Booted.Commit != h.Ids[0] || host.Booted.Stateroot != "default" || host.Booted.DeploySerial != 0 {
		t.Fatalf("booted %+v", host.Booted)
	}
	if host.Rollback == nil || host.Rollback.Commit != h.Ids[1] || host.Staged != nil || host.RollbackQueued {
		t.Fatalf("rollback %+v staged %+v queued %v", host.Rollback, host.Staged, host.RollbackQueued)
	}
	if got := host.Booted.Image.String(); got != "quay.io/example/someimage:latest" {
		t.Errorf("booted image %q", got)
	}
	if r := host.Rollback.Image; r.Transport != "registry" || r.Image != "quay.io/example/someimage:v1" {
		t.Errorf("rollback image %+v", r)
	}
	info, err := host.ImageInfo(host.Booted)
	if err != nil {
		t.Fatal(err)
	}
	if info.ManifestDigest != imgA.ManifestDigest() || host.Booted.ManifestDigest != imgA.ManifestDigest() ||
		info.Architecture != "arm64" || info.Version != "nightly" || !info.Created.Equal(imgA.Created) {
		t.Errorf("image info %+v", info)
	}
}

func TestOstreeStagedAndQueuedRollback(t *testing.T) {
	h := sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}, {Image: imgC, Staged: true}}, 0)
	host := load(t, h, h.Cmdline)
	if host.Staged == nil || host.Staged.Commit != h.Ids[2] || !host.Staged.Staged || host.Staged.Image.Transport != "containers-storage" {
		t.Fatalf("staged %+v", host.Staged)
	}
	// Without the running system's /run (a disk image), nothing is staged.
	host, err := sysroot.Load(h.Root, sysroot.Options{Cmdline: h.Cmdline})
	if err != nil || host.Staged != nil {
		t.Fatalf("staged without run dir: %+v, %v", host.Staged, err)
	}

	h = sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}}, 1)
	host = load(t, h, h.Cmdline)
	if host.Booted.Commit != h.Ids[1] || host.Rollback.Commit != h.Ids[0] || !host.RollbackQueued {
		t.Fatalf("booted %s rollback %s queued %v", host.Booted.Commit, host.Rollback.Commit, host.RollbackQueued)
	}
}

func TestNothingBooted(t *testing.T) {
	h := sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}}, 0)
	host := load(t, h, "root=/dev/sda1 quiet")
	if host.Booted != nil || host.Rollback != nil || len(host.Other) != 2 {
		t.Fatalf("booted %v rollback %v other %d", host.Booted, host.Rollback, len(host.Other))
	}
}

func TestComposefsHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		boot    sysroottest.ComposefsBoot
		runFile bool
		// diskImage: no /run at all (a mounted disk), so the staged
		// entries say what is staged.
		diskImage bool
	}{{"bls", sysroottest.BLS, true, false}, {"bls-disk", sysroottest.BLS, false, true}, {"uki", sysroottest.UKI, true, false}, {"uki-disk", sysroottest.UKI, false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}, {Image: imgC, Staged: true}}, 0, tc.boot, tc.runFile)
			if tc.diskImage {
				h.RunDir = ""
			}
			host := load(t, h, h.Cmdline)
			if host.Kind != sysroot.KindComposefs || host.Bootloader != "grub" {
				t.Fatalf("kind %s bootloader %s", host.Kind, host.Bootloader)
			}
			if host.Booted == nil || host.Booted.Verity != h.Ids[0] {
				t.Fatalf("booted %+v", host.Booted)
			}
			if host.Rollback == nil || host.Rollback.Verity != h.Ids[1] {
				t.Fatalf("rollback %+v", host.Rollback)
			}
			if host.Staged == nil || host.Staged.Verity != h.Ids[2] {
				t.Fatalf("staged %+v", host.Staged)
			}
			want := "bls"
			if tc.boot == sysroottest.UKI {
				want = "uki"
			}
			if host.Booted.BootType != want || host.Booted.ManifestDigest != imgA.ManifestDigest() {
				t.Errorf("booted boot type %q manifest %q", host.Booted.BootType, host.Booted.ManifestDigest)
			}
			info, err := host.ImageInfo(host.Staged)
			if err != nil {
				t.Fatal(err)
			}
			if info.Architecture != "amd64" || info.ManifestDigest != imgC.ManifestDigest() {
				t.Errorf("staged info %+v", info)
			}
			info, err = host.ImageInfo(host.Booted)
			if err != nil {
				t.Fatal(err)
			}
			if info.Version != "nightly" || !info.Created.Equal(imgA.Created) {
				t.Errorf("booted info %+v", info)
			}
		})
	}
}

// TestComposefsStagedNotAnnounced: on a running system the staged
// deployment is the one /run/composefs/staged-deployment names, as bootc's
// status reads it. Staged entries without it (staged, then rebooted
// without finalize: /run is gone) are not shown as staged, and do not
// become the rollback.
func TestComposefsStagedNotAnnounced(t *testing.T) {
	for _, boot := range []sysroottest.ComposefsBoot{sysroottest.BLS, sysroottest.UKI} {
		h := sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}, {Image: imgC, Staged: true}}, 0, boot, false)
		host := load(t, h, h.Cmdline)
		if host.Staged != nil {
			t.Errorf("boot %d: staged %s without /run/composefs/staged-deployment", boot, host.Staged.Verity)
		}
		if host.Booted == nil || host.Booted.Verity != h.Ids[0] || host.Rollback == nil || host.Rollback.Verity != h.Ids[1] || len(host.Other) != 0 {
			t.Errorf("boot %d: booted %+v rollback %+v other %d", boot, host.Booted, host.Rollback, len(host.Other))
		}
		announce := func(id string) {
			if err := os.MkdirAll(filepath.Join(h.RunDir, "composefs"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(h.RunDir, "composefs", "staged-deployment"), []byte(`{"depl_id":"`+id+`","finalization_locked":false}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// An announcement naming what no entry names is not a staging.
		announce(sysroottest.Verity(9))
		if host := load(t, h, h.Cmdline); host.Staged != nil {
			t.Errorf("boot %d: staged %s, which no entry names", boot, host.Staged.Verity)
		}
		// Nor is one naming the booted deployment.
		announce(h.Ids[0])
		if host := load(t, h, h.Cmdline); host.Staged != nil || host.Booted == nil {
			t.Errorf("boot %d: staged %+v booted %+v", boot, host.Staged, host.Booted)
		}
	}
}

func TestComposefsVerityOptional(t *testing.T) {
	h := sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0, sysroottest.BLS, false)
	host := load(t, h, "rw composefs=?"+h.Ids[0])
	if host.Booted == nil || !host.Booted.VerityOptional {
		t.Fatalf("booted %+v", host.Booted)
	}
}

func TestNotAHost(t *testing.T) {
	dir := t.TempDir()
	_, err := sysroot.Load(dir, sysroot.Options{})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err %v", err)
	}
}

// Every malformed input is an error that names the file.
func TestMalformedInputsNameTheFile(t *testing.T) {
	type breaker func(t *testing.T, h *sysroottest.Host) string
	ostreeEntry := func(h *sysroottest.Host) string {
		m, _ := filepath.Glob(filepath.Join(h.Root, "boot", "loader", "entries", "ostree-*.conf"))
		return m[0]
	}
	cfsEntry := func(h *sysroottest.Host) string {
		m, _ := filepath.Glob(filepath.Join(h.Root, "boot", "loader", "entries", "*.conf"))
		return m[0]
	}
	put := func(t *testing.T, path, content string) string {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := map[string]struct {
		composefs bool
		brk       breaker
	}{
		"bls-no-linux": {false, func(t *testing.T, h *sysroottest.Host) string {
			return put(t, ostreeEntry(h), "title x\noptions ostree=/ostree/boot.1/default/x/0\n")
		}},
		"bls-no-ostree-arg": {false, func(t *testing.T, h *sysroottest.Host) string {
			return put(t, ostreeEntry(h), "title x\nlinux /vmlinuz\noptions root=/dev/sda\n")
		}},
		"bls-bad-ostree-arg": {false, func(t *testing.T, h *sysroottest.Host) string {
			return put(t, ostreeEntry(h), "title x\nlinux /vmlinuz\noptions ostree=/ostree/../../etc\n")
		}},
		"origin-no-ref": {false, func(t *testing.T, h *sysroottest.Host) string {
			m, _ := filepath.Glob(filepath.Join(h.Root, "ostree", "deploy", "default", "deploy", "*.origin"))
			return put(t, m[0], "[origin]\nfoo=bar\n")
		}},
		"origin-bad-ref": {false, func(t *testing.T, h *sysroottest.Host) string {
			m, _ := filepath.Glob(filepath.Join(h.Root, "ostree", "deploy", "default", "deploy", "*.origin"))
			return put(t, m[0], "[origin]\ncontainer-image-reference=quay.io/x\n")
		}},
		"origin-not-keyfile": {false, func(t *testing.T, h *sysroottest.Host) string {
			m, _ := filepath.Glob(filepath.Join(h.Root, "ostree", "deploy", "default", "deploy", "*.origin"))
			return put(t, m[0], "container-image-reference=x\n")
		}},
		"bootc-json": {false, func(t *testing.T, h *sysroottest.Host) string {
			os.MkdirAll(filepath.Join(h.Root, "composefs"), 0o700)
			return put(t, filepath.Join(h.Root, "composefs", "bootc.json"), `{"version":1,"unified":"yes"}`)
		}},
		"repo-config": {false, func(t *testing.T, h *sysroottest.Host) string {
			return put(t, filepath.Join(h.Root, "ostree", "repo", "config"), "[core]\nrepo_version=1\nmode=bare\n[composefs]\nunified=maybe\n")
		}},
		"cfs-bls-bad-verity": {true, func(t *testing.T, h *sysroottest.Host) string {
			return put(t, cfsEntry(h), "title x\nlinux /vmlinuz\noptions composefs=abc\n")
		}},
		"cfs-origin-bad-boot-type": {true, func(t *testing.T, h *sysroottest.Host) string {
			p := filepath.Join(h.Root, "state", "deploy", h.Ids[0], h.Ids[0]+".origin")
			return put(t, p, "[origin]\ncontainer-image-reference=ostree-unverified-registry:q/x\n[boot]\nboot_type=efi\n")
		}},
		"cfs-origin-bad-manifest": {true, func(t *testing.T, h *sysroottest.Host) string {
			p := filepath.Join(h.Root, "state", "deploy", h.Ids[0], h.Ids[0]+".origin")
			return put(t, p, "[origin]\ncontainer-image-reference=ostree-unverified-registry:q/x\n[image]\nmanifest_digest=sha256:zz\n")
		}},
		"cfs-staged-deployment": {true, func(t *testing.T, h *sysroottest.Host) string {
			os.MkdirAll(filepath.Join(h.RunDir, "composefs"), 0o755)
			return put(t, filepath.Join(h.RunDir, "composefs", "staged-deployment"), `{"depl_id":1}`)
		}},
		"cfs-user-cfg": {true, func(t *testing.T, h *sysroottest.Host) string {
			os.MkdirAll(filepath.Join(h.Root, "boot", "grub2"), 0o755)
			return put(t, filepath.Join(h.Root, "boot", "grub2", "user.cfg"), "menuentry \"x\" { chainloader /EFI/Linux/other.efi }\n")
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var h *sysroottest.Host
			if tc.composefs {
				h = sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0, sysroottest.BLS, false)
			} else {
				h = sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0)
			}
			path := tc.brk(t, h)
			_, err := sysroot.Load(h.Root, sysroot.Options{Cmdline: h.Cmdline, RunDir: h.RunDir})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error does not name %s on one line: %v", path, err)
			}
		})
	}
}

// A dual-boot entry beside bootc's is skipped, not an error.
func TestComposefsForeignEntry(t *testing.T) {
	h := sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}}, 0, sysroottest.BLS, false)
	os.WriteFile(filepath.Join(h.Root, "boot", "loader", "entries", "windows.conf"), []byte("title Windows\nefi /EFI/Microsoft/Boot/bootmgfw.efi\n"), 0o644)
	host := load(t, h, h.Cmdline)
	if host.Booted == nil || host.Rollback == nil || len(host.Other) != 0 {
		t.Fatalf("booted %v rollback %v other %d", host.Booted, host.Rollback, len(host.Other))
	}
}

// systemd-boot keeps entries on the ESP.
func TestComposefsESP(t *testing.T) {
	h := sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}, {Image: imgB}}, 1, sysroottest.BLS, false)
	esp := t.TempDir()
	if err := os.Rename(filepath.Join(h.Root, "boot", "loader"), filepath.Join(esp, "loader")); err != nil {
		t.Fatal(err)
	}
	host, err := sysroot.Load(h.Root, sysroot.Options{Cmdline: h.Cmdline, ESP: esp})
	if err != nil {
		t.Fatal(err)
	}
	if host.Bootloader != "systemd" || host.Booted == nil || host.Booted.Verity != h.Ids[1] || host.Rollback.Verity != h.Ids[0] || !host.RollbackQueued {
		t.Fatalf("%+v", host)
	}
}
