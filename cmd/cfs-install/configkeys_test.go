package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/install"
)

// TestInstallConfigKeys: the [install] keys bootc's install to-filesystem
// honours besides kargs, and the command line winning over them.
func TestInstallConfigKeys(t *testing.T) {
	t.Run("ostree host", func(t *testing.T) {
		tg := newTarget(t, "xfs", map[string]string{
			"usr/lib/bootc/install/10-a.toml": "[install]\nstateroot = \"early\"\nroot-mount-spec = \"LABEL=early\"\n",
			// bootloader none is bootc's "no bootloader managed by
			// bootc": an ostree host's entries are ostree's either way.
			"usr/lib/bootc/install/20-b.toml": "[install]\nstateroot = \"fromcfg\"\nroot-mount-spec = \"LABEL=cfgroot\"\nboot-mount-spec = \"LABEL=cfgboot\"\nbootloader = \"none\"\n" +
				"[install.ostree]\nbls-append-except-default = 'grub_users=\"\"'\n",
		})
		res := tg.install(t)
		if res.HostKind != install.KindOstree || res.Stateroot != "fromcfg" || res.BootMountSpec != "LABEL=cfgboot" {
			t.Fatalf("summary %+v", res)
		}
		if !strings.HasPrefix(res.Deployment, filepath.Join(tg.root, "ostree/deploy/fromcfg/deploy")+"/") {
			t.Errorf("deployment %s not in stateroot fromcfg", res.Deployment)
		}
		if want := "root=LABEL=cfgroot rw boot=LABEL=cfgboot "; !strings.HasPrefix(strings.Join(res.Kargs, " ")+" ", want) {
			t.Errorf("kargs %q, want them to start %q", res.Kargs, want)
		}
		if _, options := bootCmdline(t, res.BootEntries[0]); !strings.HasPrefix(options, "root=LABEL=cfgroot rw boot=LABEL=cfgboot ") {
			t.Errorf("entry options %q", options)
		}
		if fstab, err := os.ReadFile(filepath.Join(res.Deployment, "etc/fstab")); err != nil || !strings.Contains(string(fstab), "LABEL=cfgboot /boot auto ro 0 0\n") {
			t.Errorf("fstab %q (%v)", fstab, err)
		}
		if got := strings.TrimSpace(run(t, "ostree", "config", "--repo="+tg.root+"/ostree/repo", "get", "sysroot.bls-append-except-default")); got != `grub_users=""` {
			t.Errorf("sysroot.bls-append-except-default = %q", got)
		}
	})
	t.Run("command line wins", func(t *testing.T) {
		tg := newTarget(t, "xfs", map[string]string{
			"usr/lib/bootc/install/10-a.toml": "[install]\nstateroot = \"fromcfg\"\nroot-mount-spec = \"LABEL=cfgroot\"\nboot-mount-spec = \"LABEL=cfgboot\"\n",
		})
		res := tg.install(t, "--stateroot", "mine", "--root-mount-spec", "", "--boot-mount-spec", "")
		if res.Stateroot != "mine" || res.BootMountSpec != "" || !strings.HasPrefix(res.Deployment, filepath.Join(tg.root, "ostree/deploy/mine/deploy")+"/") {
			t.Fatalf("summary %+v", res)
		}
		if res.Kargs[0] != "rw" {
			t.Errorf("kargs %q: an empty --root-mount-spec leaves root= out", res.Kargs)
		}
	})
	t.Run("bootloader none on a native host", func(t *testing.T) {
		tg := newTarget(t, "xfs", map[string]string{"usr/lib/bootc/install/10-a.toml": "[install]\nbootloader = \"none\"\n"})
		r := cfsInstall("to-filesystem", "--tls-verify=false", "--insecure-policy", "--composefs-native", tg.root, tg.ref)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code == 0 || !strings.Contains(lines[len(lines)-1], `bootloader "none" is not supported`) {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		if ents, _ := filepath.Glob(filepath.Join(tg.root, "boot/loader/entries/*")); len(ents) != 0 {
			t.Errorf("entries written: %v", ents)
		}
		r = cfsInstall("to-filesystem", "--bootloader", "none", "--composefs-native", tg.root, tg.ref)
		if r.code != 2 || !strings.Contains(r.stderr, "--bootloader none is not supported") {
			t.Errorf("--bootloader none: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestPrintConfiguration: cfs-install print-configuration prints the
// merged install configuration of --root as bootc's print-configuration
// does; kargs only with --all.
func TestPrintConfiguration(t *testing.T) {
	root := t.TempDir()
	for rel, body := range map[string]string{
		"usr/lib/bootc/install/00-a.toml": "[install]\nstateroot = \"a\"\nkargs = [\"k=1\"]\n",
		"etc/bootc/install/10-b.toml":     "[install]\nbootloader = \"systemd\"\n",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(root, rel), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"block":["direct"],"boot-mount-spec":null,"bootloader":"systemd","bootupd":null,"discoverable-partitions":null,"enforce-container-sigpolicy":null,"filesystem":null,` +
		`%s"match-architectures":null,"ostree":null,"root-fs-type":null,"root-mount-spec":null,"stateroot":"a","storage":null}`
	for _, tc := range []struct {
		args  []string
		kargs string
	}{{nil, ""}, {[]string{"--all"}, `"kargs":["k=1"],`}} {
		r := cfsInstall(append(append([]string{"print-configuration"}, tc.args...), "--root", root)...)
		if w := strings.Replace(want, "%s", tc.kargs, 1); r.code != 0 || r.stdout != w {
			t.Errorf("%v: exit %d %s\n got %s\nwant %s", tc.args, r.code, r.stderr, r.stdout, w)
		}
	}
	os.WriteFile(filepath.Join(root, "etc/bootc/install/10-b.toml"), []byte("[install]\nbootloader = \"lilo\"\n"), 0o644)
	if r := cfsInstall("print-configuration", "--root", root); r.code == 0 || !strings.Contains(r.stderr, "10-b.toml: install.bootloader:") {
		t.Errorf("bad fragment: exit %d, stderr %q", r.code, r.stderr)
	}
}
