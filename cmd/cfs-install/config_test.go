package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/sysroot"
)

var storageEnabled = map[string]string{"usr/lib/bootc/install/00-storage.toml": "[install.storage]\nunified = \"enabled\"\n"}

// TestInstallConfigUnified: an image whose install configuration says
// unified = "enabled" installs unified storage from the start: the image
// in bootc's containers-storage too, bootc.json written, and cfs-status
// says so. The same image installed with --source-imgref from a machine
// whose own configuration masks that fragment (/dev/null) is not unified.
func TestInstallConfigUnified(t *testing.T) {
	t.Run("enabled", func(t *testing.T) { testEnabled(t) })
	// On a native host bootc's containers-storage is composefs/bootc,
	// reached through ostree/bootc.
	t.Run("enabled on a native host", func(t *testing.T) { testEnabled(t, "--composefs-native") })
	t.Run("masked by the host", func(t *testing.T) {
		tg := newTarget(t, "xfs", storageEnabled)
		host := t.TempDir()
		os.MkdirAll(filepath.Join(host, "etc/bootc/install"), 0o755)
		if err := os.Symlink("/dev/null", filepath.Join(host, "etc/bootc/install/00-storage.toml")); err != nil {
			t.Fatal(err)
		}
		res := tg.install(t, "--source-imgref", "docker://quay.io/example/os:42", "--host-config-root", host)
		if res.Storage != "disabled" {
			t.Fatalf("summary %+v", res)
		}
		if _, ok, _ := sysroot.ReadBootcJSON(tg.root); ok {
			t.Errorf("bootc.json written although the host masks the fragment")
		}
		if _, err := os.Stat(cstorage.DefaultGraphRoot(tg.root)); err == nil {
			t.Errorf("containers-storage created although unified storage is off")
		}
		origin, _ := os.ReadFile(res.Deployment + ".origin")
		if !strings.Contains(string(origin), "container-image-reference=ostree-unverified-registry:quay.io/example/os:42\n") {
			t.Errorf("origin %q does not follow --source-imgref", origin)
		}
		cmdline, _ := bootCmdline(t, res.BootEntries[0])
		human, _ := status(t, tg.root, cmdline)
		if !strings.Contains(human, "Storage: ostree-composefs-bound") || strings.Contains(human, "unified") {
			t.Errorf("cfs-status:\n%s", human)
		}
	})
}

func testEnabled(t *testing.T, flags ...string) {
	tg := newTarget(t, "xfs", storageEnabled)
	res := tg.install(t, flags...)
	if res.Storage != "enabled" || res.StorageFrom != "image:/usr/lib/bootc/install/00-storage.toml" {
		t.Fatalf("summary %+v", res)
	}
	mode, ok, err := sysroot.ReadBootcJSON(tg.root)
	if err != nil || !ok || mode != sysroot.UnifiedEnabled {
		t.Errorf("bootc.json: %q %v %v", mode, ok, err)
	}
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(tg.root), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := store.FindImage(strings.TrimPrefix(tg.ref, "docker://"))
	store.Close()
	if err != nil || "sha256:"+img.ID != tg.img.ConfigDigest.String() {
		t.Errorf("containers-storage: %+v %v, want image %s", img, err, tg.img.ConfigDigest)
	}
	cmdline, _ := bootCmdline(t, res.BootEntries[0])
	human, _ := status(t, tg.root, cmdline)
	if !strings.Contains(human, "Storage: unified (enabled)") {
		t.Errorf("cfs-status:\n%s", human)
	}
	if len(flags) > 0 {
		if target, err := os.Readlink(filepath.Join(tg.root, "ostree/bootc")); err != nil || target != "../composefs/bootc" {
			t.Errorf("ostree/bootc -> %q (%v)", target, err)
		}
		if _, err := os.Stat(filepath.Join(tg.root, "composefs/bootc/storage/overlay-images")); err != nil {
			t.Errorf("containers-storage not under composefs/bootc: %v", err)
		}
	}
}

// TestInstallEnabledNeedsReflinks: "enabled" on ext4 is refused with
// exit status 5 before anything is written to ROOT.
func TestInstallEnabledNeedsReflinks(t *testing.T) {
	tg := newTarget(t, "ext4", storageEnabled)
	before, _ := os.ReadDir(tg.root)
	r := cfsInstall("to-filesystem", "--tls-verify=false", "--insecure-policy", tg.root, tg.ref)
	if r.code != 5 || !strings.Contains(r.stderr, "image:/usr/lib/bootc/install/00-storage.toml") || !strings.Contains(r.stderr, "reflinks") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	after, _ := os.ReadDir(tg.root)
	if len(after) != len(before) {
		t.Errorf("ROOT held %v, now %v", before, after)
	}
}
