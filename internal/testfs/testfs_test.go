package testfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func fsTypeOf(t *testing.T, dir string) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	switch uint32(st.Type) {
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	}
	return "unknown"
}

// TestTeardown makes each kind of filesystem in a subtest, so that by the
// time the subtest returns its cleanups have run, and then checks from the
// outside that nothing is left mounted or attached.
func TestTeardown(t *testing.T) {
	RequirePrivileged(t)
	for _, fstype := range Types {
		t.Run(fstype, func(t *testing.T) {
			var made *FS
			t.Run("use", func(t *testing.T) {
				made = New(t, fstype, 0)
				if made.Type != fstype {
					t.Errorf("Type = %q, want %q", made.Type, fstype)
				}
				if m, err := isMounted(made.Dir); err != nil || !m {
					t.Fatalf("%s not mounted after New (err %v)", made.Dir, err)
				}
				if got := fsTypeOf(t, made.Dir); got != fstype {
					t.Errorf("statfs(%s) says %s, want %s", made.Dir, got, fstype)
				}
				want := bytes.Repeat([]byte("cfs"), 10000)
				p := made.Path("hello")
				if err := os.WriteFile(p, want, 0o644); err != nil {
					t.Fatal(err)
				}
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("read back %d bytes, err %v", len(got), err)
				}
				if fstype != "tmpfs" && (made.Loop == "" || loopBackingFile(made.Loop) != made.Image) {
					t.Errorf("%s should be attached to %s, backing file is %q", made.Loop, made.Image, loopBackingFile(made.Loop))
				}
			})
			if made == nil {
				return
			}
			if m, err := isMounted(made.Dir); err != nil || m {
				t.Errorf("%s still mounted after cleanup (err %v)", made.Dir, err)
			}
			if made.Loop != "" && loopBackingFile(made.Loop) == made.Image {
				t.Errorf("%s still attached to %s after cleanup", made.Loop, made.Image)
			}
			if made.Image != "" {
				if _, err := os.Stat(made.Image); !os.IsNotExist(err) {
					t.Errorf("image %s not removed (stat: %v)", made.Image, err)
				}
			}
		})
	}
}

// TestParallel makes several loop filesystems at once, the situation where
// losetup --find races with itself.
func TestParallel(t *testing.T) {
	RequirePrivileged(t)
	for i := range 4 {
		fstype := []string{"xfs", "btrfs", "ext4", "ext4"}[i]
		t.Run(fstype, func(t *testing.T) {
			t.Parallel()
			fs := New(t, fstype, 0)
			if err := os.WriteFile(fs.Path("f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`:  "/tmp/a b",
		`/x\134y`:      `/x\y`,
		`/plain`:       "/plain",
		`/trailing\04`: `/trailing\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeTB stands in for a test whose setup fails, so we can watch what its
// cleanups do afterwards.
type fakeTB struct {
	testing.TB
	cleanups []func()
	fatal    string
	errors   []string
}

func (f *fakeTB) Helper()              {}
func (f *fakeTB) Cleanup(fn func())    { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Skipf(string, ...any) { f.fatal = "skipped"; runtime.Goexit() }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// TestFailedMountStillDetaches formats an ext4 image but mounts it with a
// filesystem type the kernel does not know, so setup dies after attaching the
// loop device; the cleanup must still detach it and remove the image.
func TestFailedMountStillDetaches(t *testing.T) {
	RequirePrivileged(t)
	RequireTool(t, "mkfs.ext4")
	loopSpecs["cfs-no-such-fs"] = loopSpecs["ext4"]
	defer delete(loopSpecs, "cfs-no-such-fs")

	fake := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		newLoop(fake, "cfs-no-such-fs", 0, false)
		t.Error("newLoop returned although mount must fail")
	}()
	<-done
	if !strings.Contains(fake.fatal, "mount") {
		t.Fatalf("setup failed with %q, want a mount failure", fake.fatal)
	}
	i := strings.Index(fake.fatal, "/dev/loop")
	if i < 0 {
		t.Fatalf("no loop device in %q", fake.fatal)
	}
	loop := strings.Fields(fake.fatal[i:])[0]
	if loopBackingFile(loop) == "" {
		t.Fatalf("%s not attached before cleanup; the test proves nothing", loop)
	}
	fake.runCleanups()
	if len(fake.errors) > 0 {
		t.Errorf("cleanup reported: %v", fake.errors)
	}
	if b := loopBackingFile(loop); strings.HasSuffix(b, "cfs-no-such-fs.img") {
		t.Errorf("%s still attached to %s after cleanup", loop, b)
	}
}

// TestXFSDirectIO checks that XFSDirectIO gives a loop device in direct-I/O
// mode where the image's filesystem allows it (the kernel's own flag), one
// that holds what is written through it, and that XFS stays buffered.
func TestXFSDirectIO(t *testing.T) {
	RequirePrivileged(t)
	RequireTool(t, "mkfs.xfs")
	dio := XFSDirectIO(t, 0)
	flag, err := os.ReadFile("/sys/block/" + strings.TrimPrefix(dio.Loop, "/dev/") + "/loop/dio")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(flag)) == "1"; got != dio.DirectIO {
		t.Errorf("DirectIO = %v, the kernel says dio=%s", dio.DirectIO, flag)
	}
	if img := fsTypeOf(t, filepath.Dir(dio.Image)); img != "tmpfs" && !dio.DirectIO {
		t.Errorf("no direct I/O on a loop device backed by %s", img)
	}
	want := bytes.Repeat([]byte("cfs"), 100000)
	if err := os.WriteFile(dio.Path("f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	unix.Sync()
	if got, err := os.ReadFile(dio.Path("f")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, err %v", len(got), err)
	}
	if XFS(t, 0).DirectIO {
		t.Error("XFS made a direct-I/O loop device")
	}
}
