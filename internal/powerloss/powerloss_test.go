package powerloss

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
)

var bins map[string]string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	dir, err := os.MkdirTemp("", "cfs-powerloss-test-")
	if err != nil {
		panic(err)
	}
	var pkgs []string
	for _, c := range []string{"cfs-pull", "cfs-clone", "cfs-ostree-import"} {
		pkgs = append(pkgs, "github.com/cfs-project/cfs/cmd/"+c)
	}
	if bins, err = testbin.Build(dir, pkgs...); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type fixture struct {
	xfs             *testfs.FS
	composefs, repo string // on the XFS
	list, cloned    string // object lists, off the XFS
	layouts         []string
	tmp             string
}

func newFixture(t *testing.T, images int) *fixture {
	testfs.RequireTool(t, "ostree")
	f := &fixture{xfs: testfs.XFS(t, 0), tmp: t.TempDir()}
	f.composefs, f.repo = f.xfs.Path("composefs"), f.xfs.Path("ostree")
	f.list, f.cloned = filepath.Join(f.tmp, "list"), filepath.Join(f.tmp, "cloned")
	for i := 0; i < images; i++ {
		img, err := testimage.Generate(testimage.Options{Seed: int64(40 + i), Scale: 3, Version: fmt.Sprintf("%d.0", i+1), UTF8Names: true})
		if err != nil {
			t.Fatal(err)
		}
		layout := filepath.Join(f.tmp, fmt.Sprintf("layout%d", i))
		if err := img.WriteOCILayout(layout, "latest"); err != nil {
			t.Fatal(err)
		}
		f.layouts = append(f.layouts, layout)
	}
	return f
}

func (f *fixture) pull(i int) *exec.Cmd {
	return exec.Command(bins["cfs-pull"], "--repo", f.composefs, "--insecure-policy", "--quiet", "--no-selinux",
		"--output", f.list, "oci:"+f.layouts[i]+":latest")
}

func (f *fixture) clone() *exec.Cmd {
	return exec.Command("sh", "-c", fmt.Sprintf("%s --to ostree --repo %s --quiet < %s > %s", bins["cfs-clone"], f.repo, f.list, f.cloned))
}

func (f *fixture) importList() *exec.Cmd {
	return exec.Command("sh", "-c", fmt.Sprintf("%s --repo %s < %s > /dev/null", bins["cfs-ostree-import"], f.repo, f.cloned))
}

func (f *fixture) pipeline(i int) *exec.Cmd {
	return exec.Command("bash", "-o", "pipefail", "-c", fmt.Sprintf("%s --repo %s --insecure-policy --quiet --no-selinux oci:%s:latest | %s --to ostree --repo %s --quiet | %s --repo %s > /dev/null",
		bins["cfs-pull"], f.composefs, f.layouts[i], bins["cfs-clone"], f.repo, bins["cfs-ostree-import"], f.repo))
}

func (f *fixture) freshOstree(t *testing.T) {
	t.Helper()
	os.RemoveAll(f.repo)
	if out, err := exec.Command("ostree", "init", "--repo="+f.repo, "--mode=bare").CombinedOutput(); err != nil {
		t.Fatalf("ostree init: %v\n%s", err, out)
	}
	// ostree init does not sync; the crash is for our writes, not its.
	unix.Sync()
}

func refs(t *testing.T, repo string) []string {
	t.Helper()
	out, err := exec.Command("ostree", "refs", "--repo="+repo).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

// crashRounds cuts the power at each of Fractions of clean, with reset
// run before each round, then re-runs the stage and checks.
func crashRounds(t *testing.T, f *fixture, clean time.Duration, reset func(round int), stage func(round int) *exec.Cmd, check func()) {
	interrupted := 0
	for round, frac := range Fractions {
		reset(round)
		if CrashDuring(t, f.xfs, stage(round), time.Duration(frac*float64(clean))) {
			interrupted++
		}
		Rerun(t, stage(round))
		check()
		if t.Failed() {
			t.Fatalf("round %d (power cut at %.0f%% of %v)", round, 100*frac, clean)
		}
	}
	t.Logf("%d of %d power cuts came while the stage ran (clean run %v)", interrupted, len(Fractions), clean)
}

// TestNamesDurableAtExit cuts the power as soon as a stage has exited:
// the next stage, run on its list after the remount, must find every
// object the list names. cfs-clone named its last objects after its last
// syncfs, so those names were still only in XFS's in-memory log.
func TestNamesDurableAtExit(t *testing.T) {
	f := newFixture(t, 1)
	cut := func() {
		f.xfs.Shutdown(t)
		f.xfs.Remount(t)
	}
	for round := 0; round < 3; round++ {
		os.RemoveAll(f.composefs)
		Time(t, f.pull(0))
		cut()
		CheckComposefs(t, f.composefs)
		f.freshOstree(t)
		Rerun(t, f.clone())
		cut()
		Rerun(t, f.importList())
		CheckOstree(t, f.repo)
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
}

// TestPowerLoss cuts the power in each stage of the pipeline (XFS
// shutdown with fsync noise) at several points, remounts and re-runs the
// stage: the re-run must succeed, every composefs object must hash to its
// name, no tag or ref may name anything incomplete, and ostree fsck must
// be clean.
func TestPowerLoss(t *testing.T) {
	f := newFixture(t, len(Fractions)+2)
	checkComposefs := func() { CheckComposefs(t, f.composefs) }

	t.Run("first pull into a new repository", func(t *testing.T) {
		clean := Time(t, f.pull(0))
		crashRounds(t, f, clean, func(int) { os.RemoveAll(f.composefs) }, func(int) *exec.Cmd { return f.pull(0) }, checkComposefs)
	})
	t.Run("pull into an existing repository", func(t *testing.T) {
		clean := Time(t, f.pull(len(f.layouts)-1))
		crashRounds(t, f, clean, func(int) {}, func(round int) *exec.Cmd { return f.pull(round + 1) }, checkComposefs)
		Time(t, f.pull(0)) // the list the next stages clone
	})
	t.Run("cfs-clone", func(t *testing.T) {
		f.freshOstree(t)
		clean := Time(t, f.clone())
		crashRounds(t, f, clean, func(int) { f.freshOstree(t) }, func(int) *exec.Cmd { return f.clone() }, func() {
			Time(t, f.importList())
			CheckOstree(t, f.repo)
		})
	})
	t.Run("cfs-ostree-import", func(t *testing.T) {
		f.freshOstree(t)
		Time(t, f.clone())
		clean := Time(t, f.importList())
		crashRounds(t, f, clean, func(int) {
			f.freshOstree(t)
			Time(t, f.clone())
		}, func(int) *exec.Cmd { return f.importList() }, func() {
			CheckOstree(t, f.repo)
			if len(refs(t, f.repo)) != 1 {
				t.Errorf("refs after the re-run: %q", refs(t, f.repo))
			}
		})
	})
	t.Run("the whole pipeline", func(t *testing.T) {
		os.RemoveAll(f.composefs)
		f.freshOstree(t)
		clean := Time(t, f.pipeline(0))
		crashRounds(t, f, clean, func(int) {
			os.RemoveAll(f.composefs)
			f.freshOstree(t)
		}, func(int) *exec.Cmd { return f.pipeline(0) }, func() {
			checkComposefs()
			CheckOstree(t, f.repo)
		})
	})
}
