package sysroot_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/sysroot"
	"golang.org/x/sys/unix"
)

// The real ostree lays out a sysroot (ostree admin init-fs, os-init,
// deploy twice): bootlinks, loader.N, ostree-N-<os>.conf entries. We must
// read it as bootc would.
func TestOstreeAdminLayout(t *testing.T) {
	ostreeBin, err := exec.LookPath("ostree")
	if err != nil {
		t.Skip("ostree CLI not installed")
	}
	dir := t.TempDir()
	tree, root := filepath.Join(dir, "tree"), filepath.Join(dir, "sysroot")
	for p, content := range map[string]string{
		"usr/lib/modules/6.1.0/vmlinuz":       "KERNEL",
		"usr/lib/modules/6.1.0/initramfs.img": "INITRD",
		"usr/etc/os-release":                  "ID=test\nPRETTY_NAME=\"Test OS 1\"\n",
	} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte(content), 0o644)
	}
	ostree := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ostreeBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ostree %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	os.MkdirAll(root, 0o755)
	ostree("admin", "init-fs", root)
	ostree("admin", "os-init", "--sysroot="+root, "default")
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	commit := ostree("commit", "--repo="+filepath.Join(root, "ostree", "repo"), "--branch=os", "--tree=dir="+tree)
	deployDir := filepath.Join(root, "ostree", "deploy", "default", "deploy")
	// ostree makes deployment dirs immutable; let TempDir remove them.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(deployDir, "*.[0-9]"))
		for _, d := range dirs {
			clearImmutable(d)
		}
	})
	ostree("admin", "deploy", "--sysroot="+root, "--os=default", "--karg=root=LABEL=root", "os")
	os.WriteFile(filepath.Join(deployDir, commit+".0.origin"), []byte("[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/x:old\n"), 0o644)
	ostree("admin", "deploy", "--sysroot="+root, "--os=default", "--karg=root=LABEL=root", "os")
	os.WriteFile(filepath.Join(deployDir, commit+".1.origin"), []byte("[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/x:new\n"), 0o644)

	entries, _ := filepath.Glob(filepath.Join(root, "boot", "loader", "entries", "ostree-*.conf"))
	if len(entries) != 2 {
		t.Fatalf("entries %v", entries)
	}
	// Both deployments share a kernel: bootserial 0 is the new default.
	bootlinks, _ := filepath.Glob(filepath.Join(root, "ostree", "boot.*.*", "default", "*", "0"))
	if len(bootlinks) != 1 {
		t.Fatalf("bootlinks %v", bootlinks)
	}
	rel, _ := filepath.Rel(root, bootlinks[0])
	base := strings.TrimSuffix("/"+rel, "/0")
	// boot.N.M is the real dir; the kernel names the boot.N symlink.
	parts := strings.Split(base, "/")
	parts[2] = parts[2][:strings.LastIndex(parts[2], ".")]
	base = strings.Join(parts, "/")

	for serial, want := range map[string]struct {
		booted, rollback string
		queued           bool
	}{
		"0": {"new", "old", false},
		"1": {"old", "new", true},
	} {
		h, err := sysroot.Load(root, sysroot.Options{Cmdline: "root=LABEL=root ostree=" + base + "/" + serial})
		if err != nil {
			t.Fatal(err)
		}
		if h.Booted == nil || h.Rollback == nil {
			t.Fatalf("serial %s: booted %v rollback %v", serial, h.Booted, h.Rollback)
		}
		if got := h.Booted.Image.Image; got != "quay.io/x:"+want.booted {
			t.Errorf("serial %s: booted %s", serial, got)
		}
		if got := h.Rollback.Image.Image; got != "quay.io/x:"+want.rollback || h.RollbackQueued != want.queued {
			t.Errorf("serial %s: rollback %s queued %v", serial, got, h.RollbackQueued)
		}
		if h.Booted.Commit != commit {
			t.Errorf("commit %s, want %s", h.Booted.Commit, commit)
		}
	}
}

func clearImmutable(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err == nil {
		unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL))
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL from linux/fs.h (chattr +i).
const fsImmutableFL = 0x10
