package installconfig

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/sysroot"
)

func put(t *testing.T, root, rel, content string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func storage(v string) string { return "[install.storage]\nunified = \"" + v + "\"\n" }

func TestNoConfig(t *testing.T) {
	c, err := Load(t.TempDir())
	if err != nil || c.Unified != "" || c.Effective() != sysroot.UnifiedDisabled || len(c.Fragments) != 0 {
		t.Fatalf("%+v %v", c, err)
	}
}

// The example bootc's CI ships (ci/Containerfile.install-unified-storage).
func TestBootcExample(t *testing.T) {
	root := t.TempDir()
	p := put(t, root, "usr/lib/bootc/install/00-storage.toml", "[install.storage]\nunified = \"enabled-with-copy\"")
	c, err := Load(root)
	if err != nil || c.Unified != sysroot.UnifiedEnabledWithCopy || c.UnifiedFrom != p {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestOverrideByBasename(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/50-storage.toml", storage("enabled"))
	put(t, root, "usr/local/lib/bootc/install/50-storage.toml", storage("disabled"))
	win := put(t, root, "etc/bootc/install/50-storage.toml", storage("enabled-with-copy"))
	c, err := Load(root)
	if err != nil || c.Unified != sysroot.UnifiedEnabledWithCopy || len(c.Fragments) != 1 || c.Fragments[0] != win {
		t.Fatalf("%+v %v", c, err)
	}
	// /run beats /etc.
	run := put(t, root, "run/bootc/install/50-storage.toml", storage("disabled"))
	if c, _ = Load(root); c.Unified != sysroot.UnifiedDisabled || c.UnifiedFrom != run {
		t.Fatalf("%+v", c)
	}
}

// Merge is in basename order whatever the directory; the last value wins.
func TestMergeOrder(t *testing.T) {
	root := t.TempDir()
	put(t, root, "run/bootc/install/10-a.toml", storage("enabled"))
	last := put(t, root, "usr/lib/bootc/install/20-b.toml", storage("enabled-with-copy"))
	put(t, root, "etc/bootc/install/15-kargs.toml", "[install]\nkargs = [\"quiet\"]\n")
	c, err := Load(root)
	if err != nil || c.Unified != sysroot.UnifiedEnabledWithCopy || c.UnifiedFrom != last {
		t.Fatalf("%+v %v", c, err)
	}
	var names []string
	for _, f := range c.Fragments {
		names = append(names, filepath.Base(f))
	}
	if strings.Join(names, " ") != "10-a.toml 15-kargs.toml 20-b.toml" {
		t.Fatalf("order %v", names)
	}
}

func TestDevNullMasks(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/00-storage.toml", storage("enabled"))
	put(t, root, "usr/lib/bootc/install/10-other.toml", "[install]\nroot-fs-type = \"xfs\"\n")
	os.MkdirAll(filepath.Join(root, "etc/bootc/install"), 0o755)
	if err := os.Symlink("/dev/null", filepath.Join(root, "etc/bootc/install/00-storage.toml")); err != nil {
		t.Fatal(err)
	}
	c, err := Load(root)
	if err != nil || c.Unified != "" || len(c.Fragments) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	// A later directory can bring the basename back.
	put(t, root, "run/bootc/install/00-storage.toml", storage("enabled-with-copy"))
	if c, _ = Load(root); c.Unified != sysroot.UnifiedEnabledWithCopy {
		t.Fatalf("%+v", c)
	}
}

func TestIgnoredFiles(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/.hidden.toml", storage("enabled"))
	put(t, root, "usr/lib/bootc/install/00-storage.conf", storage("enabled"))
	put(t, root, "usr/lib/bootc/install/00-storage.toml.rpmsave", storage("enabled"))
	os.MkdirAll(filepath.Join(root, "usr/lib/bootc/install/dir.toml"), 0o755)
	c, err := Load(root)
	if err != nil || c.Unified != "" || len(c.Fragments) != 0 {
		t.Fatalf("%+v %v", c, err)
	}
}

// Keys outside [install.storage] are bootc's business.
func TestUnknownKeysElsewhereIgnored(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/00.toml", "top = 1\n[install]\nroot-fs-type = \"xfs\"\nfuture-key = true\n[install.filesystem.root]\ntype = \"xfs\"\n[other]\nx = [1, 2]\n"+storage("enabled"))
	if c, err := Load(root); err != nil || c.Unified != sysroot.UnifiedEnabled {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestMatchArchitectures(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/00.toml", storage("enabled"))
	put(t, root, "usr/lib/bootc/install/10.toml", "[install]\nmatch-architectures = [\"no-such-arch\"]\n"+"[install.storage]\nunified = \"disabled\"\n")
	if c, err := Load(root); err != nil || c.Unified != sysroot.UnifiedEnabled || len(c.Fragments) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestErrorsNameFileAndKey(t *testing.T) {
	for name, tc := range map[string]struct{ content, want string }{
		"invalid-value":  {storage("yes"), `install.storage.unified: invalid value "yes"`},
		"wrong-case":     {storage("Enabled"), `install.storage.unified: invalid value "Enabled"`},
		"not-a-string":   {"[install.storage]\nunified = true\n", "install.storage.unified: must be a string, not a boolean"},
		"unknown-key":    {"[install.storage]\nunifed = \"enabled\"\n", "install.storage.unifed: unknown key"},
		"storage-scalar": {"[install]\nstorage = \"enabled\"\n", "install.storage: must be a table"},
		"malformed":      {"[install.storage\nunified = \"enabled\"\n", "malformed TOML: line 2"},
		"malformed-line": {"[install.storage]\nunified = enabled\n", "malformed TOML: line 2"},
		"duplicate-key":  {"[install.storage]\nunified = \"enabled\"\nunified = \"disabled\"\n", "malformed TOML"},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			put(t, root, "usr/lib/bootc/install/00-ok.toml", storage("enabled"))
			p := put(t, root, "etc/bootc/install/50-bad.toml", tc.content)
			_, err := Load(root)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, p+": ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("got %q, want %s: ...%s... on one line", msg, p, tc.want)
			}
		})
	}
}

// A later tree overrides and masks by basename: the installing host's
// /etc masks the image's /usr/lib fragment with a /dev/null symlink.
func TestLoadOfHostMasksImage(t *testing.T) {
	image, host := t.TempDir(), t.TempDir()
	p := put(t, image, "usr/lib/bootc/install/00-storage.toml", storage("enabled"))
	c, err := LoadOf(image, host)
	if err != nil || c.Unified != sysroot.UnifiedEnabled || c.UnifiedFrom != p {
		t.Fatalf("%+v %v", c, err)
	}
	os.MkdirAll(filepath.Join(host, "etc/bootc/install"), 0o755)
	if err := os.Symlink("/dev/null", filepath.Join(host, "etc/bootc/install/00-storage.toml")); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadOf(image, host); err != nil || c.Unified != "" || len(c.Fragments) != 0 {
		t.Fatalf("masked: %+v %v", c, err)
	}
	// The image alone still says enabled.
	if c, err = LoadOf(image); err != nil || c.Unified != sysroot.UnifiedEnabled {
		t.Fatalf("image alone: %+v %v", c, err)
	}
	// A host fragment of the same name overrides the image's.
	os.Remove(filepath.Join(host, "etc/bootc/install/00-storage.toml"))
	put(t, host, "run/bootc/install/00-storage.toml", storage("disabled"))
	if c, err = LoadOf(image, host); err != nil || c.Unified != sysroot.UnifiedDisabled {
		t.Fatalf("overridden: %+v %v", c, err)
	}
}

// [install] kargs are appended in merge order; a wrong type names the file.
func TestKargs(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/10-a.toml", "[install]\nkargs = [\"console=ttyS0\", \"quiet\"]\n")
	put(t, root, "usr/lib/bootc/install/20-b.toml", "[install]\nkargs = [\"nosmt\"]\n")
	put(t, root, "usr/lib/bootc/install/15-d.toml", "[install]\nkarg-deletes = [\"quiet\"]\n")
	put(t, root, "etc/bootc/install/16-e.toml", "[install]\nkarg-deletes = [\"rhgb\"]\n")
	c, err := Load(root)
	if err != nil || strings.Join(c.Kargs, " ") != "console=ttyS0 quiet nosmt" || strings.Join(c.KargDeletes, " ") != "quiet rhgb" {
		t.Fatalf("%+v %v", c, err)
	}
	bad := put(t, root, "usr/lib/bootc/install/30-c.toml", "[install]\nkargs = \"nosmt\"\n")
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "install.kargs") {
		t.Fatalf("want an error naming %s: %v", bad, err)
	}
}

// The scalars bootc's install to-filesystem honours: the last fragment
// setting one wins, an empty mount spec is kept (it means "no argument"),
// a skipped fragment does not count.
func TestScalars(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/10-a.toml", "[install]\nstateroot = \"first\"\nroot-mount-spec = \"LABEL=r\"\nbootloader = \"grub\"\n[install.ostree]\nbls-append-except-default = \"grub_users=\\\"\\\"\"\n")
	put(t, root, "etc/bootc/install/20-b.toml", "[install]\nstateroot = \"second\"\nboot-mount-spec = \"\"\nbootloader = \"systemd\"\n")
	put(t, root, "etc/bootc/install/30-c.toml", "[install]\nmatch-architectures = [\"no-such-arch\"]\nstateroot = \"skipped\"\n")
	c, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	got := strings.Join([]string{str(c.Stateroot), str(c.RootMountSpec), str(c.BootMountSpec), str(c.Bootloader), str(c.BLSAppendExceptDefault)}, "|")
	if want := `second|LABEL=r||systemd|grub_users=""`; got != want {
		t.Errorf("merged %q, want %q", got, want)
	}
	if c, err := Load(t.TempDir()); err != nil || c.Stateroot != nil || c.RootMountSpec != nil || c.Bootloader != nil || c.BLSAppendExceptDefault != nil {
		t.Errorf("empty: %+v %v", c, err)
	}
}

func TestScalarErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"[install]\nbootloader = \"lilo\"\n", `install.bootloader: "lilo" is not one of grub, grub-cc, systemd, none`},
		{"[install]\nstateroot = 3\n", "install.stateroot: must be a string, not an integer"},
		{"[install]\nstateroot = \"a/b\"\n", `install.stateroot: "a/b" is not a valid stateroot name`},
		{"[install]\nroot-mount-spec = true\n", "install.root-mount-spec: must be a string, not a boolean"},
		{"[install.ostree]\nbls-append = \"x\"\n", "install.ostree.bls-append: unknown key"},
		{"[install]\nostree = 1\n", "install.ostree: must be a table, not an integer"},
	} {
		root := t.TempDir()
		p := put(t, root, "usr/lib/bootc/install/00.toml", tc.body)
		_, err := Load(root)
		if err == nil || err.Error() != p+": "+tc.want {
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
	}
}

// TestPrintJSON: bootc's install print-configuration: every key, null
// when unset; merged as bootc merges (kargs appended, tables field by
// field, match-architectures the first fragment's, a skipped fragment
// left out); canonicalized (filesystem.root.type wins over root-fs-type,
// block defaults to direct); kargs and karg-deletes only with all.
func TestPrintJSON(t *testing.T) {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch == "" {
		t.Skip("test written for x86_64 and aarch64")
	}
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/00-a.toml", "[install]\nroot-fs-type = \"xfs\"\nkargs = [\"a\"]\nmatch-architectures = [\""+arch+"\"]\n[install.bootupd]\n")
	put(t, root, "usr/lib/bootc/install/10-b.toml", "[install]\nstateroot = \"s\"\nkargs = [\"b\"]\nkarg-deletes = [\"c\"]\nenforce-container-sigpolicy = true\n"+
		"[install.filesystem.root]\ntype = \"btrfs\"\n[install.storage]\nunified = \"enabled\"\n[install.ostree]\nbls-append-except-default = \"x\\\"y\"\n")
	put(t, root, "etc/bootc/install/20-skip.toml", "[install]\nmatch-architectures = [\"no-such-arch\"]\nstateroot = \"no\"\n")
	put(t, root, "etc/bootc/install/30-none.toml", "# nothing\n")
	c, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	base := `"block":["direct"],"boot-mount-spec":null,"bootloader":null,"bootupd":{"skip-boot-uuid":null},"discoverable-partitions":null,"enforce-container-sigpolicy":true,"filesystem":{"root":{"type":"btrfs"}},`
	rest := `"match-architectures":["` + arch + `"],"ostree":{"bls-append-except-default":"x\"y"},"root-fs-type":"btrfs","root-mount-spec":null,"stateroot":"s","storage":{"unified":"enabled"}}`
	for all, want := range map[bool]string{false: "{" + base + rest, true: "{" + base + `"karg-deletes":["c"],"kargs":["a","b"],` + rest} {
		got, err := c.PrintJSON(all)
		if err != nil || string(got) != want {
			t.Errorf("all=%v:\n got %s (%v)\nwant %s", all, got, err, want)
		}
	}

	// root-fs-type alone fills filesystem.root.type.
	root = t.TempDir()
	put(t, root, "usr/lib/bootc/install/00.toml", "[install]\nroot-fs-type = \"ext4\"\nblock = [\"tpm2-luks\"]\n")
	c, _ = Load(root)
	if got, _ := c.PrintJSON(true); !strings.Contains(string(got), `"block":["tpm2-luks"],`) || !strings.Contains(string(got), `"filesystem":{"root":{"type":"ext4"}},`) || strings.Contains(string(got), "kargs") {
		t.Errorf("got %s", got)
	}
	// Nothing at all: bootc's default, not canonicalized.
	c, _ = Load(t.TempDir())
	want := `{"block":null,"boot-mount-spec":null,"bootloader":null,"bootupd":null,"discoverable-partitions":null,"enforce-container-sigpolicy":null,"filesystem":null,"match-architectures":null,"ostree":null,"root-fs-type":null,"root-mount-spec":null,"stateroot":null,"storage":null}`
	if got, _ := c.PrintJSON(true); string(got) != want {
		t.Errorf("empty:\n got %s\nwant %s", got, want)
	}
}

// TestOtherKeyErrors: the keys cfs only prints are checked as bootc's
// types check them.
func TestOtherKeyErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"[install]\nroot-fs-type = \"zfs\"\n", `install.root-fs-type: "zfs" is not one of [xfs ext4 btrfs]`},
		{"[install]\nblock = [\"raid\"]\n", `install.block: "raid" is not one of [direct tpm2-luks]`},
		{"[install]\ndiscoverable-partitions = \"yes\"\n", "install.discoverable-partitions: must be a boolean, not a string"},
		{"[install.bootupd]\nskip = true\n", "install.bootupd.skip: unknown key"},
		{"[install.filesystem.root]\ntype = 1\n", "install.filesystem.root.type: must be a string, not an integer"},
		{"[install]\nmatch-architectures = \"x86_64\"\n", "install.match-architectures: must be an array of strings, not a string"},
	} {
		root := t.TempDir()
		p := put(t, root, "usr/lib/bootc/install/00.toml", tc.body)
		_, err := Load(root)
		if err == nil || err.Error() != p+": "+tc.want {
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
	}
}

// [install] enforce-container-sigpolicy: the last fragment setting it
// wins (a later false turns an earlier true off, as bootc's merge_basic
// does), and the fragment is named.
func TestEnforceContainerSigpolicy(t *testing.T) {
	root := t.TempDir()
	put(t, root, "usr/lib/bootc/install/10-a.toml", "[install]\nenforce-container-sigpolicy = true\n")
	c, err := Load(root)
	if err != nil || c.EnforceContainerSigpolicy == nil || !*c.EnforceContainerSigpolicy || c.EnforceFrom != filepath.Join(root, "usr/lib/bootc/install/10-a.toml") {
		t.Fatalf("one fragment: %+v %v", c, err)
	}
	last := put(t, root, "etc/bootc/install/20-b.toml", "[install]\nenforce-container-sigpolicy = false\n")
	if c, err = Load(root); err != nil || c.EnforceContainerSigpolicy == nil || *c.EnforceContainerSigpolicy || c.EnforceFrom != last {
		t.Fatalf("a later false: %+v %v", c, err)
	}
	if c, err := Load(t.TempDir()); err != nil || c.EnforceContainerSigpolicy != nil {
		t.Errorf("empty: %+v %v", c, err)
	}
	put(t, root, "etc/bootc/install/30-c.toml", "[install]\nenforce-container-sigpolicy = \"yes\"\n")
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), "install.enforce-container-sigpolicy: must be a boolean, not a string") {
		t.Errorf("a string: %v", err)
	}
}
