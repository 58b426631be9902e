package nativehost

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// stageChildEnv makes the test binary a staging process (root, run dir,
// manifest digest, image ref, booted id, one per line), for the tests
// that kill it.
const stageChildEnv = "CFS_NATIVEHOST_STAGE_CHILD"

func stageChild(args []string) int {
	if len(args) != 5 {
		fmt.Fprintln(os.Stderr, "stage child: want 5 arguments")
		return 2
	}
	repo, err := composefs.Open(filepath.Join(args[0], "composefs"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer repo.Close()
	img, err := ResolveImage(repo, args[2], args[3])
	if err == nil {
		_, err = (&Host{Root: args[0], RunDir: args[1]}).Stage(img, args[4])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// unstage puts the host back as installed.
func (f *installed) unstage(t *testing.T) {
	t.Helper()
	if err := f.h.discardStaged(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(f.h.Root, "state/deploy", f.r2.id),
		filepath.Join(f.h.Root, "state", ".tmp-deploy-"+f.r2.id),
		filepath.Join(f.h.bootDir(), typeOneDirPrefix+f.r2.id),
		filepath.Join(f.h.bootDir(), ".tmp-"+typeOneDirPrefix+f.r2.id),
	} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
}

// checkHost checks what a bootloader and bootc would find: every entry,
// live or staged, boots an image that is in the repository, with a state
// directory and origin, and boot files whose digest is the origin's; an
// announced staged deployment has its staged entries. It returns the
// number of staged entries.
func checkHost(t *testing.T, h *Host) int {
	t.Helper()
	staged := 0
	for _, dir := range []string{"entries", "entries.staged"} {
		names, _ := filepath.Glob(filepath.Join(h.LoaderDir(), dir, "*.conf"))
		for _, n := range names {
			e, err := sysroot.ParseBLSEntry(n)
			if err != nil {
				t.Errorf("%s: %v", n, err)
				continue
			}
			id, ok, err := sysroot.EntryVerity(e)
			if err != nil || !ok {
				t.Errorf("%s: %v", n, err)
				continue
			}
			if dir == "entries.staged" {
				staged++
			}
			if _, err := os.Stat(filepath.Join(h.Root, "composefs/images", id)); err != nil {
				t.Errorf("%s boots a missing image: %v", n, err)
			}
			o, err := sysroot.ReadOrigin(filepath.Join(h.Root, "state/deploy", id, id+".origin"))
			if err != nil {
				t.Errorf("%s: deployment: %v", n, err)
				continue
			}
			if _, err := os.Stat(filepath.Join(h.Root, "state/deploy", id, "etc")); err != nil {
				t.Errorf("%s: deployment without etc: %v", n, err)
			}
			sum := sha256.New()
			for _, p := range append([]string{e.Linux}, e.Initrd...) {
				file := filepath.Join(h.bootDir(), strings.TrimPrefix(p, h.bootPrefix()))
				if h.Bootloader == Systemd {
					file = filepath.Join(h.ESP, p)
				}
				f, err := os.Open(file)
				if err != nil {
					t.Errorf("%s: %v", n, err)
					continue
				}
				io.Copy(sum, f)
				f.Close()
			}
			if got := hex.EncodeToString(sum.Sum(nil)); got != o.BootDigest {
				t.Errorf("%s: kernel and initramfs hash to %s, the origin says %s", n, got, o.BootDigest)
			}
		}
	}
	if data, err := os.ReadFile(h.StagedFile()); err == nil {
		if staged == 0 {
			t.Errorf("staged deployment announced (%s) without staged entries", data)
		}
	}
	return staged
}

// TestStageKilled: SIGKILL at points over a staging leaves every entry
// bootable, and a new staging completes.
func TestStageKilled(t *testing.T) {
	f := newInstalled(t, "")
	args := strings.Join([]string{f.h.Root, f.h.RunDir, f.r2.image.ManifestDigest, f.r2.image.ImageRef, f.r1.id}, "\n")
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), stageChildEnv+"="+args)
		return cmd
	}
	start := time.Now()
	if out, err := child().CombinedOutput(); err != nil {
		t.Fatalf("staging: %v\n%s", err, out)
	}
	clean := time.Since(start)
	if checkHost(t, f.h) != 2 {
		t.Fatal("a clean staging did not leave two staged entries")
	}
	f.unstage(t)
	for _, frac := range []float64{0.1, 0.3, 0.5, 0.7, 0.85, 0.95} {
		cmd := child()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(float64(clean) * frac))
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		n := checkHost(t, f.h)
		t.Logf("killed at %.0f%% (%v): %v; %d staged entries", frac*100, time.Duration(float64(clean)*frac), err, n)
		repo := openRepo(t, f.h.Root)
		img := f.r2.image
		img.Repo = repo
		if _, err := f.h.Stage(img, f.r1.id); err != nil {
			t.Fatalf("staging again after the kill: %v", err)
		}
		if checkHost(t, f.h) != 2 {
			t.Fatal("staging again left no staged entries")
		}
		f.unstage(t)
	}
}

// TestStageENOSPC: with /boot (a partition of its own) or the root
// filled so that staging runs out of space at different points, it fails
// naming ENOSPC, leaves no staged entry, and succeeds once there is room.
// (On one XFS the kernel is reflinked from the repository and staging
// needs next to no space.)
func TestStageENOSPC(t *testing.T) {
	boot := testfs.Ext4(t, 32*testfs.MiB)
	f := newInstalled(t, boot.Dir)
	free := func(dir string) int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		// Root may use the blocks ext4 reserves for it.
		return int64(st.Bfree) * st.Bsize
	}
	settle := func(dir string) int64 {
		last := int64(-1)
		for i := 0; i < 50; i++ {
			unix.Sync()
			if n := free(dir); n == last {
				return n
			} else {
				last = n
			}
			time.Sleep(100 * time.Millisecond)
		}
		return last
	}
	// fill leaves about leave bytes free on dir's filesystem (filesystems
	// keep some space for their metadata: ask for less until it fits).
	fill := func(dir string, leave int64) string {
		filler := filepath.Join(dir, "filler")
		for slack := int64(0); slack < 64*testfs.MiB; slack += 64 << 10 {
			size := settle(dir) - leave - slack
			if size <= 0 {
				break
			}
			if exec.Command("fallocate", "-l", fmt.Sprint(size), filler).Run() == nil {
				return filler
			}
			os.Remove(filler)
		}
		t.Fatalf("cannot fill %s", dir)
		return ""
	}
	before := settle(boot.Dir)
	d, err := f.h.Stage(f.r2.image, f.r1.id)
	if err != nil {
		t.Fatal(err)
	}
	// /boot is a filesystem of its own: GRUB finds the kernels at its
	// top, so every entry says /bootc_composefs-<id>/… (bootc's "/" prefix).
	for _, e := range []string{filepath.Join(boot.Dir, "loader/entries/bootc_cfs-1.0-1.conf"), filepath.Join(boot.Dir, "loader/entries.staged/bootc_cfs-1.0-0.conf"), d.Entry} {
		if got := readFile(t, e); !strings.Contains(got, "\nlinux /bootc_composefs-") || !strings.Contains(got, "\ninitrd /bootc_composefs-") {
			t.Errorf("%s:\n%s", e, got)
		}
	}
	used := before - settle(boot.Dir)
	t.Logf("a staging uses %d bytes of /boot", used)
	f.unstage(t)
	type when struct {
		dir  string
		frac float64
	}
	failed := 0
	for _, w := range []when{{boot.Dir, 0.02}, {boot.Dir, 0.4}, {boot.Dir, 0.8}, {boot.Dir, 0.95}, {f.fs.Dir, 0}} {
		filler := fill(w.dir, int64(float64(used)*w.frac))
		_, err := f.h.Stage(f.r2.image, f.r1.id)
		n := checkHost(t, f.h)
		t.Logf("%s filled to %.0f%% of what staging needs: %v; %d staged entries", w.dir, w.frac*100, err, n)
		if err != nil {
			failed++
			if !errors.Is(err, unix.ENOSPC) && !strings.Contains(err.Error(), "no space left on device") {
				t.Errorf("want ENOSPC, got %v", err)
			}
			if n != 0 {
				t.Errorf("a failed staging left %d staged entries", n)
			}
		}
		os.Remove(filler)
		if _, err := f.h.Stage(f.r2.image, f.r1.id); err != nil {
			t.Fatalf("staging with room again: %v", err)
		}
		f.unstage(t)
	}
	if failed < 4 {
		t.Fatalf("only %d stagings ran out of space", failed)
	}
}

// TestStageDownloadOnly: bootc's upgrade --download-only. The staging is
// announced with finalization_locked true, status says so, finalize
// leaves it alone until Unlock (--from-downloaded). A reboot forgets a
// staging (its announcement lived in /run): the next shutdown's finalize
// does not apply the entries left behind.
func TestStageDownloadOnly(t *testing.T) {
	f := newInstalled(t, "")
	h := f.h
	etc := filepath.Join(h.Root, "state/deploy", f.r1.id, "etc")
	entries := filepath.Join(h.Root, "boot/loader/entries")
	live := readFile(t, filepath.Join(entries, "bootc_cfs-1.0-1.conf"))
	cmd1 := cmdlineOf(t, filepath.Join(entries, "bootc_cfs-1.0-1.conf"))

	if _, err := (&Host{Root: h.Root}).StageDownloadOnly(f.r2.image, f.r1.id); err == nil {
		t.Error("a download-only staging without a run directory is accepted")
	}
	if _, err := h.StageDownloadOnly(f.r2.image, f.r1.id); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, h.StagedFile()), `{"depl_id":"`+f.r2.id+`","finalization_locked":true}`; got != want {
		t.Errorf("staged-deployment %s, want %s", got, want)
	}
	if s := load(t, h, cmd1); !s.StagedFinalizationLocked || s.Staged == nil || s.Staged.Verity != f.r2.id {
		t.Errorf("status: staged %v locked %v", s.Staged, s.StagedFinalizationLocked)
	}
	if id, err := h.Finalize(f.r1.id, etc); err != nil || id != "" {
		t.Fatalf("finalize of a locked staging: %q %v", id, err)
	}
	if got := readFile(t, filepath.Join(entries, "bootc_cfs-1.0-1.conf")); got != live {
		t.Errorf("a locked staging was swapped in:\n%s", got)
	}

	// Reboot without finalizing: /run is empty again.
	os.Remove(h.StagedFile())
	if id, err := h.Finalize(f.r1.id, etc); err != nil || id != "" {
		t.Fatalf("finalize after a reboot: %q %v, want nothing done", id, err)
	}
	if _, err := os.Stat(filepath.Join(entries, "bootc_cfs-1.0-1.conf")); err != nil {
		t.Errorf("the entries after a reboot: %v", err)
	}
	if _, _, err := h.Unlock(); err == nil {
		t.Error("unlocking with nothing staged")
	}

	if _, err := h.StageDownloadOnly(f.r2.image, f.r1.id); err != nil {
		t.Fatal(err)
	}
	if id, was, err := h.Unlock(); err != nil || id != f.r2.id || !was {
		t.Fatalf("unlock: %q %v %v", id, was, err)
	}
	if got, want := readFile(t, h.StagedFile()), `{"depl_id":"`+f.r2.id+`","finalization_locked":false}`; got != want {
		t.Errorf("staged-deployment %s, want %s", got, want)
	}
	if _, was, err := h.Unlock(); err != nil || was {
		t.Errorf("unlocking twice: %v %v", was, err)
	}
	if id, err := h.Finalize(f.r1.id, etc); err != nil || id != f.r2.id {
		t.Fatalf("finalize after unlock: %q %v", id, err)
	}
}
