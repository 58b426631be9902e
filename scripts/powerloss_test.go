package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/powerloss"
	"github.com/cfs-project/cfs/internal/testimage"
)

// TestUpgradePowerLoss cuts the power (XFS shutdown, fsync noise) at
// several points of cfs-upgrade on a bound host, remounts and runs it
// again: the re-run must succeed and deploy the new image, the composefs
// repository must hold only whole objects and complete tagged images,
// and ostree fsck must be clean. Each round upgrades to a new release.
func TestUpgradePowerLoss(t *testing.T) {
	h := newHost(t, "xfs")
	must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs")
	unix.Sync() // the fixture's own writes (ostree admin) are not under test
	upgrade := func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(binDir, "cfs-upgrade"), "--sysroot", h.sysroot, "--cmdline", h.cmdline)
		cmd.Env = append(append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH")+":/usr/sbin:/sbin"), h.env...)
		return cmd
	}
	push := func(version int) *testimage.Image {
		img, err := testimage.Generate(testimage.Options{Seed: 11, Version: fmt.Sprintf("%d.0", version), UTF8Names: true})
		if err != nil {
			t.Fatal(err)
		}
		h.reg.Push(t, "os", "stable", img)
		return img
	}
	push(2)
	clean := powerloss.Time(t, upgrade())
	repo := h.sysroot + "/ostree/repo"
	interrupted := 0
	// Two cuts: an upgrade is the slowest stage, and every earlier one
	// has its own rounds in internal/powerloss.
	fractions := []float64{0.3, 0.7}
	for round, frac := range fractions {
		img := push(round + 3)
		if powerloss.CrashDuring(t, h.fs, upgrade(), time.Duration(frac*float64(clean))) {
			interrupted++
		}
		powerloss.Rerun(t, upgrade())
		powerloss.CheckComposefs(t, h.sysroot+"/composefs")
		powerloss.CheckOstree(t, repo)
		// The deployment written is of this round's image.
		status := must(t, sh(t, nil, "ostree", "admin", "status", "--sysroot="+h.sysroot), "ostree admin status").stdout
		commits, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/*.origin"))
		found := false
		for _, c := range commits {
			commit := strings.SplitN(filepath.Base(c), ".", 2)[0]
			out := sh(t, nil, "ostree", "show", "--repo="+repo, "--print-metadata-key=ostree.manifest-digest", commit).stdout
			found = found || strings.Contains(out, img.ManifestDigest.String())
		}
		if !found {
			t.Errorf("no deployment of release %d.0 after the re-run:\n%s", round+3, status)
		}
		if t.Failed() {
			t.Fatalf("round %d (power cut at %.0f%% of %v)", round, 100*frac, clean)
		}
	}
	t.Logf("%d of %d power cuts came while cfs-upgrade ran (clean run %v)", interrupted, len(fractions), clean)
}
