package fsverity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEnableMeasure drives the real ioctls on a file in the test's temp dir.
// Most kernels and filesystems here lack fs-verity (this machine's kernel has
// no CONFIG_FS_VERITY), so the usual outcome is ErrUnavailable; where Enable
// works, the kernel's digest must equal ours. CFS_FSVERITY_TEST_DIR points
// the test at a verity-capable filesystem (e.g. ext4 made with -O verity).
func TestEnableMeasure(t *testing.T) {
	dir := os.Getenv("CFS_FSVERITY_TEST_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "verity-test-file")
	data := randomBytes(3*4096+17, 5)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })

	f, err := os.Open(path) // read-only: a writable fd makes Enable fail with ETXTBSY
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	_, _, err = Measure(f)
	if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotEnabled) {
		t.Fatalf("Measure before Enable: %v, want ErrUnavailable or ErrNotEnabled", err)
	}
	if errors.Is(err, ErrUnavailable) == errors.Is(err, ErrNotEnabled) {
		t.Errorf("Measure error %v is both (or neither) unavailable and not-enabled", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("Measure error %q does not name the file", err)
	}

	err = Enable(f, SHA512)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Enable: %v, want nil or ErrUnavailable", err)
		}
		if errors.Is(err, ErrNotEnabled) {
			t.Errorf("Enable error %v also claims ErrNotEnabled", err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Enable error %q does not name the file", err)
		}
		var errno unix.Errno
		if !errors.As(err, &errno) {
			t.Errorf("Enable error %v does not carry the errno", err)
		}
		t.Logf("fs-verity unavailable here, as expected on this kernel: %v", err)
		return
	}

	t.Log("fs-verity works here; checking the kernel's digest against ours")
	if err := Enable(f, SHA512); err != nil {
		t.Errorf("Enable on a verity file must succeed (EEXIST), got %v", err)
	}
	alg, digest, err := Measure(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := DigestFile(path, SHA512)
	if err != nil {
		t.Fatal(err)
	}
	if alg != SHA512 || !bytes.Equal(digest, want) {
		t.Errorf("Measure = %v:%x, userspace digest sha512:%x", alg, digest, want)
	}
}

func TestEnableRejectsInvalidAlgorithm(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Enable(f, Algorithm(9)); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("Enable with algorithm 9: %v", err)
	}
}

// TestEnableNonRegularFile makes sure a caller mistake (ENOTTY or EINVAL
// from a device) is not mistaken for a kernel without fs-verity.
func TestEnableNonRegularFile(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = Enable(f, SHA256)
	if err == nil {
		t.Fatal("Enable on /dev/null succeeded")
	}
	t.Logf("Enable(/dev/null): %v", err)
	if errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Enable on a device reported as %v", err)
	}
}

// TestErrnoMapping covers the errnos this kernel cannot produce.
func TestErrnoMapping(t *testing.T) {
	for _, tc := range []struct {
		errno                     unix.Errno
		enableNil, enableUnavail  bool
		measureUnavail, notEnable bool
	}{
		{errno: unix.EEXIST, enableNil: true},
		{errno: unix.EOPNOTSUPP, enableUnavail: true, measureUnavail: true},
		{errno: unix.ENOTTY, enableUnavail: true, measureUnavail: true},
		{errno: unix.EINVAL, enableUnavail: true},
		{errno: unix.ENOPKG, enableUnavail: true},
		{errno: unix.ENODATA, notEnable: true},
		{errno: unix.ETXTBSY},
		{errno: unix.EACCES},
	} {
		err := enableError("/x", tc.errno)
		if (err == nil) != tc.enableNil || errors.Is(err, ErrUnavailable) != tc.enableUnavail {
			t.Errorf("enableError(%v) = %v", tc.errno, err)
		}
		if err != nil && !errors.Is(err, tc.errno) {
			t.Errorf("enableError(%v) = %v loses the errno", tc.errno, err)
		}
		err = measureError("/x", tc.errno)
		if errors.Is(err, ErrUnavailable) != tc.measureUnavail || errors.Is(err, ErrNotEnabled) != tc.notEnable || !errors.Is(err, tc.errno) {
			t.Errorf("measureError(%v) = %v", tc.errno, err)
		}
	}
	if enableError("/x", nil) != nil || measureError("/x", nil) != nil {
		t.Error("success mapped to an error")
	}
}
