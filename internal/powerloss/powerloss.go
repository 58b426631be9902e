// Package powerloss runs a pipeline stage, cuts the power in the middle
// of it (XFS shutdown while another process fsyncs every 20 ms), brings
// the filesystem back, and checks what a host would find: every stored
// object whole under its name, no tag or ref on anything incomplete.
package powerloss

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
)

// Fractions of a stage's clean run time at which the power is cut.
var Fractions = []float64{0.15, 0.5, 0.85}

// Time runs cmd to completion, failing the test if it fails, and returns
// how long it took: the scale for the crash points.
func Time(t testing.TB, cmd *exec.Cmd) time.Duration {
	t.Helper()
	start := time.Now()
	run(t, cmd)
	return time.Since(start)
}

func run(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	var errb bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &errb
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, errb.Bytes())
	}
}

// CrashDuring starts cmd with fsync noise on the filesystem, shuts the
// filesystem down after the given delay, waits for cmd to end (it fails
// on EIO, or finished before the cut), and remounts. It reports whether
// cmd was still running at the cut.
func CrashDuring(t testing.TB, xfs *testfs.FS, cmd *exec.Cmd, after time.Duration) (interrupted bool) {
	t.Helper()
	stop := xfs.FsyncNoise(t)
	var errb bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &errb
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		// Finished first: the cut still tests that what it wrote is
		// durable, names included.
	case <-time.After(after):
		interrupted = true
	}
	xfs.Shutdown(t)
	stop()
	if interrupted {
		<-done
	}
	xfs.Remount(t)
	return interrupted
}

// Rerun runs cmd again after a crash; it must succeed.
func Rerun(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	run(t, cmd)
}

// CheckComposefs checks a composefs repository after a crash: every
// object's fs-verity digest is its name, and every tag names a manifest
// whose config, layers (with each object they name, by size) and EROFS
// image are stored.
func CheckComposefs(t testing.TB, path string) {
	t.Helper()
	r, err := composefs.Open(path)
	if err != nil {
		t.Fatalf("composefs repository after the crash: %v", err)
	}
	defer r.Close()
	root := filepath.Join(path, "objects")
	bad := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		got, derr := fsverity.DigestFile(p, r.Algorithm())
		if derr != nil || filepath.Dir(rel)+filepath.Base(rel) != hex.EncodeToString(got) {
			if bad++; bad <= 3 {
				st, _ := os.Lstat(p)
				t.Errorf("composefs object %s (%d bytes) has digest %x (%v)", rel, st.Size(), got, derr)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if bad > 3 {
		t.Errorf("%d composefs objects do not match their names", bad)
	}
	tags, err := r.Tags()
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		digest, err := r.ResolveTag(tag)
		if err != nil {
			t.Errorf("tag %s: %v", tag, err)
			continue
		}
		img, err := oci.OpenImage(r, digest)
		if err != nil {
			t.Errorf("tag %s names an incomplete image: %v", tag, err)
			continue
		}
		if _, _, err := oci.BuildTree(r, img.DiffIDs); err != nil {
			t.Errorf("tag %s names an image with an incomplete layer: %v", tag, err)
		}
		if img.ImageID == nil || !r.HasImage(img.ImageID) {
			t.Errorf("tag %s names an image without its EROFS image", tag)
		}
	}
}

// CheckOstree runs `ostree fsck` on a repository after a crash, which
// checks every object the refs reach, and checks that every dirtree,
// dirmeta and commit object, reached or not, hashes to its name.
func CheckOstree(t testing.TB, path string) {
	t.Helper()
	out, err := exec.Command("ostree", "fsck", "--repo="+path).CombinedOutput()
	if err != nil {
		t.Errorf("ostree fsck %s after the crash: %v\n%s", path, err, out)
	}
	bad := 0
	filepath.WalkDir(filepath.Join(path, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := filepath.Ext(p)
		if ext != ".dirtree" && ext != ".dirmeta" && ext != ".commit" {
			return nil
		}
		data, _ := os.ReadFile(p)
		name := filepath.Base(filepath.Dir(p)) + strings.TrimSuffix(filepath.Base(p), ext)
		if got := sha256Hex(data); got != name {
			if bad++; bad <= 3 {
				t.Errorf("ostree object %s: %d bytes hashing to %s", p, len(data), got)
			}
		}
		return nil
	})
	if bad > 3 {
		t.Errorf("%d ostree metadata objects are damaged", bad)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
