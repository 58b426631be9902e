package scripts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
)

// deployments lists the deployment directories of the default stateroot.
func (h *hostFixture) deployments() []string {
	d, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/*.[0-9]"))
	return d
}

// TestUpgradeOnceAndOneAtATime: an image already deployed is not deployed
// again (bootc's "No update available."), except that a host bound since
// its last deployment gets the synthesized commit of the same image; two
// upgrades at once deploy once; a relative --sysroot works.
func TestUpgradeOnceAndOneAtATime(t *testing.T) {
	h := newHost(t, "xfs")
	// A relative --sysroot, from the directory that holds it.
	rel := sh(t, nil, "bash", "-c", `cd "$(dirname "$1")" && bootc-set-unified composefs --sysroot "$(basename "$1")"`, "-", h.sysroot)
	must(t, rel, "bootc-set-unified with a relative --sysroot")
	upgrade := func(relative bool) run {
		t.Helper()
		if relative {
			cmdline, _ := filepath.Rel(filepath.Dir(h.sysroot), h.cmdline)
			return sh(t, h.env, "bash", "-c", `cd "$(dirname "$1")" && cfs-upgrade --sysroot "$(basename "$1")" --cmdline "$2"`, "-", h.sysroot, cmdline)
		}
		return sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline)
	}

	nothingToDo := func(out string) bool {
		out = strings.TrimSpace(out)
		return out == "No update available." || out == "Staged update present, not changed."
	}

	// The booted commit is classic: the same image is deployed again, as
	// its synthesized commit.
	r := must(t, upgrade(true), "cfs-upgrade of the booted image on a newly bound host")
	c1 := strings.TrimSpace(r.stdout)
	if len(c1) != 64 || !strings.Contains(r.stderr, "not synthesized") {
		t.Fatalf("cfs-upgrade printed %q\n%s", r.stdout, r.stderr)
	}
	before := h.deployments()
	// That deployment boots next; running again changes nothing.
	r = must(t, upgrade(false), "cfs-upgrade again")
	if !nothingToDo(r.stdout) || !slices.Equal(h.deployments(), before) {
		t.Errorf("second upgrade said %q; deployments %v, were %v\n%s", r.stdout, h.deployments(), before, r.stderr)
	}
	// Booted, it is not an update either.
	h.cmdline = h.bootCmdline(t, 2)
	r = must(t, upgrade(false), "cfs-upgrade on the booted synthesized image")
	if strings.TrimSpace(r.stdout) != "No update available." || !slices.Equal(h.deployments(), before) {
		t.Errorf("upgrade of the booted image said %q; deployments %v, were %v\n%s", r.stdout, h.deployments(), before, r.stderr)
	}

	// A new image and two upgrades at once: one deploys, the other waits
	// for it and then finds the image deployed.
	v2, err := testimage.Generate(testimage.Options{Seed: 11, Version: "2.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	var wg sync.WaitGroup
	results := make([]run, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = upgrade(false)
		}()
	}
	wg.Wait()
	var commits []string
	idle := 0
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("upgrade %d: exit %d\n%s", i, r.code, r.stderr)
		}
		if out := strings.TrimSpace(r.stdout); len(out) == 64 {
			commits = append(commits, out)
		} else if nothingToDo(out) {
			idle++
		}
	}
	waited := strings.Contains(results[0].stderr+results[1].stderr, "another cfs-upgrade of "+h.sysroot+" is running")
	if len(commits) != 1 || idle != 1 || !waited {
		t.Fatalf("concurrent upgrades: commits %v, %d with nothing to do, one waited: %v\n%s\n%s", commits, idle, waited, results[0].stderr, results[1].stderr)
	}
	if d, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/"+commits[0]+".*[0-9]")); len(d) != 1 {
		t.Errorf("the new commit is deployed %d times: %v", len(d), d)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
}

// TestUpgradeLockIsSharedWithTheUnit: the unit upgrades /sysroot, the
// directory the script locks, and says so.
func TestUpgradeLockIsSharedWithTheUnit(t *testing.T) {
	script, err := os.ReadFile("cfs-upgrade")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile("../units/cfs-upgrade.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(script, []byte(`exec {lock_fd}<"$sysroot"`)) || !bytes.Contains(script, []byte("sysroot=/sysroot")) ||
		!bytes.Contains(unit, []byte("flock on /sysroot")) || bytes.Contains(unit, []byte("--sysroot")) {
		t.Errorf("the script and the unit do not share the lock on /sysroot")
	}
	if _, err := exec.LookPath("flock"); err != nil {
		t.Errorf("flock is not installed: %v", err)
	}
}
