package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// checkEntries fails the test if any bootloader entry under root names
// something missing: an ostree entry's bootlink and deployment, kernel and
// initramfs; a composefs entry's image and state directory. It returns
// how many entries there are.
func checkEntries(t *testing.T, root string) int {
	t.Helper()
	var entries []string
	for _, g := range []string{"boot/loader/entries/*.conf", "boot/efi/loader/entries/*.conf"} {
		m, _ := filepath.Glob(filepath.Join(root, g))
		entries = append(entries, m...)
	}
	keyRe := regexp.MustCompile(`(?m)^(linux|initrd|options|efi|uki) (.*)$`)
	for _, e := range entries {
		data, err := os.ReadFile(e)
		if err != nil {
			t.Errorf("%s: %v", e, err)
			continue
		}
		for _, m := range keyRe.FindAllStringSubmatch(string(data), -1) {
			switch m[1] {
			case "linux", "initrd":
				p := strings.TrimPrefix(m[2], "/boot")
				if fi, err := os.Stat(filepath.Join(root, "boot", p)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %s %s is missing or empty (%v)", e, m[1], m[2], err)
				}
			case "options":
				for _, arg := range strings.Fields(m[2]) {
					k, v, _ := strings.Cut(arg, "=")
					switch k {
					case "ostree":
						d, err := filepath.EvalSymlinks(filepath.Join(root, v))
						if err != nil {
							t.Errorf("%s: %s does not resolve: %v", e, arg, err)
							continue
						}
						if _, err := os.Stat(filepath.Join(d, "usr/lib/os-release")); err != nil {
							t.Errorf("%s: deployment %s is incomplete: %v", e, d, err)
						}
					case "composefs":
						v = strings.TrimPrefix(v, "?")
						if _, err := os.Stat(filepath.Join(root, "composefs/images", v)); err != nil {
							t.Errorf("%s: image %s is missing: %v", e, v, err)
						}
						if _, err := os.Stat(filepath.Join(root, "state/deploy", v, v+".origin")); err != nil {
							t.Errorf("%s: deployment %s is missing: %v", e, v, err)
						}
					}
				}
			}
		}
	}
	return len(entries)
}

// emptyRoot removes everything an install left in root (ostree's
// immutable deployment directories included).
func emptyRoot(t *testing.T, root string) {
	t.Helper()
	unlockDeployments(root)
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// childrenGone waits until no process has root on its command line: a
// killed install's ostree admin deploy must die with it.
func childrenGone(t *testing.T, root string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var alive []string
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			data, err := os.ReadFile(p)
			if err == nil && bytes.Contains(data, []byte(root)) {
				alive = append(alive, strings.ReplaceAll(string(data), "\x00", " "))
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still working on %s after the kill: %q", root, alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInstallKilled: cfs-install killed with SIGKILL at points spread
// over its run leaves ROOT with no entry, or with entries whose every
// target is in place, and takes its ostree children with it. A last run
// to the end installs.
func TestInstallKilled(t *testing.T) {
	t.Run("ostree", func(t *testing.T) { testInstallKilled(t) })
	t.Run("native", func(t *testing.T) { testInstallKilled(t, "--composefs-native") })
}

func testInstallKilled(t *testing.T, flags ...string) {
	tg := newTarget(t, "xfs", nil)
	root := filepath.Join(tg.root, "root")
	args := append(append([]string{"to-filesystem", "--tls-verify=false", "--insecure-policy", "--quiet", "--root-mount-spec", "UUID=0000"}, flags...), root, tg.ref)
	os.Mkdir(root, 0o755)
	start := time.Now()
	if out, err := exec.Command(bins["cfs-install"], args...).CombinedOutput(); err != nil {
		t.Fatalf("cfs-install: %v\n%s", err, out)
	}
	full := time.Since(start)
	if checkEntries(t, root) != 1 {
		t.Fatalf("a complete install left no entry")
	}
	withEntry := 0
	// A killed install cannot remove its scratch directory: keep it in
	// the test's own.
	scratch := t.TempDir()
	for _, frac := range []float64{0.1, 0.3, 0.5, 0.7, 0.85, 0.95} {
		emptyRoot(t, root)
		cmd := exec.Command(bins["cfs-install"], args...)
		cmd.Env = append(os.Environ(), "TMPDIR="+scratch)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(float64(full) * frac))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		childrenGone(t, root)
		// ostree admin deploy freezes the filesystem around its boot
		// swap; killed in between (our child dies with us), it leaves the
		// filesystem frozen until thawed, as a reboot would. Thaw it, or
		// the next write here blocks forever; "not frozen" is fine.
		exec.Command("fsfreeze", "--unfreeze", tg.root).Run()
		n := checkEntries(t, root)
		withEntry += n
		t.Logf("killed at %.0f%% (%v): %d entries", frac*100, time.Duration(float64(full)*frac).Round(time.Millisecond), n)
	}
	emptyRoot(t, root)
	if out, err := exec.Command(bins["cfs-install"], args...).CombinedOutput(); err != nil {
		t.Fatalf("cfs-install after the kills: %v\n%s", err, out)
	}
	if checkEntries(t, root) != 1 {
		t.Errorf("no entry after a complete install")
	}
	if len(flags) == 0 {
		run(t, "ostree", "fsck", "--repo="+root+"/ostree/repo")
	}
}

// TestInstallENOSPC: with the filesystem filled so that the install runs
// out of space at different points, it fails with one line naming the
// cause, and ROOT has no entry pointing at anything missing.
func TestInstallENOSPC(t *testing.T) {
	t.Run("ostree", func(t *testing.T) { testInstallENOSPC(t) })
	t.Run("native", func(t *testing.T) { testInstallENOSPC(t, "--composefs-native") })
}

func testInstallENOSPC(t *testing.T, flags ...string) {
	tg := newTarget(t, "xfs", nil)
	root := filepath.Join(tg.root, "root")
	os.Mkdir(root, 0o755)
	args := append(append([]string{"to-filesystem", "--tls-verify=false", "--insecure-policy", "--quiet", "--root-mount-spec", "UUID=0000"}, flags...), root, tg.ref)
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(tg.root, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	// XFS frees removed files' blocks in the background: wait until the
	// free space stops moving.
	settle := func() int64 {
		last := int64(-1)
		for i := 0; i < 50; i++ {
			exec.Command("sync", "-f", tg.root).Run()
			if f := free(); f == last {
				return f
			} else {
				last = f
			}
			time.Sleep(100 * time.Millisecond)
		}
		return last
	}
	before := settle()
	if r := cfsInstall(args...); r.code != 0 {
		t.Fatalf("cfs-install: exit %d\n%s", r.code, r.stderr)
	}
	used := before - settle()
	emptyRoot(t, root)
	failed := 0
	for _, frac := range []float64{0.2, 0.5, 0.8, 0.97, 0.995} {
		filler := filepath.Join(tg.root, "filler")
		os.Remove(filler)
		leave := int64(float64(used) * frac)
		if err := exec.Command("fallocate", "-l", fmt.Sprint(settle()-leave), filler).Run(); err != nil {
			t.Fatalf("fallocate: %v", err)
		}
		r := cfsInstall(args...)
		n := checkEntries(t, root)
		t.Logf("%.0f%% of the space an install needs: exit %d, %d entries: %s", frac*100, r.code, n, strings.TrimSpace(r.stderr))
		if r.code != 0 {
			failed++
			if n != 0 {
				t.Errorf("a failed install left %d entries", n)
			}
			// ostree admin deploy, when it is the one to run out, says
			// it with glib's capital: "No space left on device".
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(strings.ToLower(r.stderr), "no space left on device") {
				t.Errorf("want one line naming ENOSPC, got %q", r.stderr)
			}
		}
		emptyRoot(t, root)
		os.Remove(filler)
	}
	if failed == 0 {
		t.Fatalf("no run ran out of space")
	}
}
