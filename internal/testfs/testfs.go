package testfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FS is a filesystem made for one test and torn down by its cleanup.
type FS struct {
	Dir   string // mount point (symlinks resolved, so it matches /proc/self/mountinfo)
	Type  string // "xfs", "btrfs", "ext4", "vfat" or "tmpfs"
	Image string // backing image file; empty for tmpfs
	Loop  string // /dev/loopN; empty for tmpfs
	// DirectIO says the loop device reads and writes its image with
	// direct I/O (XFSDirectIO), not through the page cache.
	DirectIO bool
}

// The images are sparse, so generous defaults cost nothing but let tests
// write several files of a few MiB. The minimums are what the mkfs tools
// accept: xfsprogs ≥ 5.19 refuses anything under 300 MiB, and btrfs needs
// room for its duplicated metadata chunks (~114 MiB with btrfs-progs 6.2).
const (
	MiB = int64(1) << 20

	defaultXFSSize   = 512 * MiB
	defaultBtrfsSize = 256 * MiB
	defaultExt4Size  = 128 * MiB
	defaultTmpfsSize = 128 * MiB
	defaultVfatSize  = 64 * MiB

	minXFSSize   = 300 * MiB
	minBtrfsSize = 128 * MiB
	minExt4Size  = 4 * MiB
	minTmpfsSize = 1 * MiB
	minVfatSize  = 8 * MiB
)

// tmpfsSource names our tmpfs mounts so a leak is easy to spot in `mount`.
const tmpfsSource = "cfs-testfs"

type loopSpec struct {
	defaultSize, minSize int64
	mkfs                 string
	mkfsArgs             []string // the image path is appended
}

var loopSpecs = map[string]loopSpec{
	"xfs":   {defaultXFSSize, minXFSSize, "mkfs.xfs", []string{"-q", "-m", "reflink=1"}},
	"btrfs": {defaultBtrfsSize, minBtrfsSize, "mkfs.btrfs", []string{"-q"}},
	"ext4":  {defaultExt4Size, minExt4Size, "mkfs.ext4", []string{"-q", "-F"}},
	"vfat":  {defaultVfatSize, minVfatSize, "mkfs.vfat", nil},
}

// Vfat makes a loop-mounted FAT filesystem, an EFI system partition's.
// size 0 means a default. It is not in Types: it holds no owners, modes
// or xattrs, and is for ESP tests only.
func Vfat(t testing.TB, size int64) *FS { t.Helper(); return newLoop(t, "vfat", size, false) }

// Types lists every filesystem New can make, for table-driven tests.
var Types = []string{"xfs", "btrfs", "ext4", "tmpfs"}

// XFS makes a loop-mounted XFS with reflink=1. size 0 means a default.
func XFS(t testing.TB, size int64) *FS { t.Helper(); return newLoop(t, "xfs", size, false) }

// XFSDirectIO is XFS on a loop device in direct-I/O mode (`losetup
// --direct-io=on`), where the filesystem in the image supports it (the
// FS's DirectIO says whether it does). A buffered loop device, the
// default, copies every block written into the page cache of the image
// file, which the host filesystem writes back again later: twice the
// memory and a memcpy of everything on a kernel thread, which a disk does
// not cost. Benchmarks that write gigabytes use it to be closer to a real
// disk; tests keep the default.
func XFSDirectIO(t testing.TB, size int64) *FS { t.Helper(); return newLoop(t, "xfs", size, true) }

// Btrfs makes a loop-mounted btrfs. size 0 means a default.
func Btrfs(t testing.TB, size int64) *FS { t.Helper(); return newLoop(t, "btrfs", size, false) }

// Ext4 makes a loop-mounted ext4, the usual filesystem without reflinks.
// size 0 means a default.
func Ext4(t testing.TB, size int64) *FS { t.Helper(); return newLoop(t, "ext4", size, false) }

// Tmpfs mounts a tmpfs (no FICLONE, no FIEMAP). size 0 means a default.
func Tmpfs(t testing.TB, size int64) *FS {
	t.Helper()
	RequirePrivileged(t)
	size = checkSize(t, "tmpfs", size, defaultTmpfsSize, minTmpfsSize)
	fs := &FS{Type: "tmpfs", Dir: makeMountPoint(t)}
	opts := fmt.Sprintf("size=%d,mode=0755", size)
	if err := retryOnce(func() error { return unix.Mount(tmpfsSource, fs.Dir, "tmpfs", 0, opts) }); err != nil {
		t.Fatalf("testfs: mount tmpfs on %s: %v", fs.Dir, err)
	}
	t.Cleanup(func() { unmount(t, fs.Dir) })
	return fs
}

// New makes a filesystem of the named type ("xfs", "btrfs", "ext4", "tmpfs").
func New(t testing.TB, fstype string, size int64) *FS {
	t.Helper()
	switch fstype {
	case "xfs":
		return XFS(t, size)
	case "btrfs":
		return Btrfs(t, size)
	case "ext4":
		return Ext4(t, size)
	case "tmpfs":
		return Tmpfs(t, size)
	}
	t.Fatalf("testfs: unknown filesystem type %q (want one of %v)", fstype, Types)
	return nil
}

// Path joins elem onto the mount point.
func (fs *FS) Path(elem ...string) string {
	return filepath.Join(append([]string{fs.Dir}, elem...)...)
}

func newLoop(t testing.TB, fstype string, size int64, directIO bool) *FS {
	t.Helper()
	RequirePrivileged(t)
	spec := loopSpecs[fstype]
	mkfs := RequireTool(t, spec.mkfs)
	losetup := RequireTool(t, "losetup")
	size = checkSize(t, fstype, size, spec.defaultSize, spec.minSize)

	// The image lives outside the mount point, which would hide it.
	fs := &FS{Type: fstype, Image: filepath.Join(t.TempDir(), fstype+".img")}
	img, err := os.OpenFile(fs.Image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("testfs: %v", err)
	}
	err = img.Truncate(size)
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("testfs: sparse image %s: %v", fs.Image, err)
	}
	t.Cleanup(func() {
		if err := os.Remove(fs.Image); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("testfs: remove image: %v", err)
		}
	})
	if out, err := exec.Command(mkfs, append(spec.mkfsArgs, fs.Image)...).CombinedOutput(); err != nil {
		t.Fatalf("testfs: %s %s: %v\n%s", spec.mkfs, fs.Image, err, out)
	}

	// Parallel tests race for the first free loop device; losetup retries
	// internally, and one more attempt covers the rare case it gives up.
	err = retryOnce(func() error {
		args := []string{"--find", "--show", fs.Image}
		if directIO {
			args = append(args, "--direct-io=on")
		}
		out, err := exec.Command(losetup, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("losetup %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		fs.Loop = strings.TrimSpace(string(out))
		return nil
	})
	if err != nil {
		t.Fatalf("testfs: %v", err)
	}
	// Registered before mounting so that a failed mount still detaches;
	// cleanups run last-in first-out, so this runs after the unmount below.
	t.Cleanup(func() { detach(t, losetup, fs.Loop, fs.Image) })
	if directIO {
		// losetup falls back to buffered I/O where the image's
		// filesystem has no direct I/O (tmpfs); the kernel says which.
		b, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(fs.Loop), "loop", "dio"))
		fs.DirectIO = strings.TrimSpace(string(b)) == "1"
	}

	fs.Dir = makeMountPoint(t)
	if err := retryOnce(func() error { return unix.Mount(fs.Loop, fs.Dir, fstype, 0, "") }); err != nil {
		t.Fatalf("testfs: mount %s (%s) on %s: %v", fs.Loop, fstype, fs.Dir, err)
	}
	t.Cleanup(func() { unmount(t, fs.Dir) })
	return fs
}

func checkSize(t testing.TB, fstype string, size, def, min int64) int64 {
	t.Helper()
	if size == 0 {
		return def
	}
	if size < min {
		t.Fatalf("testfs: %s needs at least %d MiB, asked for %d bytes", fstype, min/MiB, size)
	}
	return size
}

func makeMountPoint(t testing.TB) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatalf("testfs: %v", err)
	}
	return dir
}

// retryOnce gives a racing resource (loop device, fresh block device that
// udev is still probing) a second chance before failing the test.
func retryOnce(f func() error) error {
	if err := f(); err == nil {
		return nil
	}
	time.Sleep(200 * time.Millisecond)
	return f()
}

// unmount retries on EBUSY because a just-closed file or udev's blkid can
// hold the filesystem for a moment after the test is done with it.
func unmount(t testing.TB, dir string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		err = unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) && !mountedOrFalse(dir) {
			return
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("testfs: umount %s: %v", dir, err)
}

// detach checks the loop device really let go of our image: losetup -d on a
// device that is still open only sets autoclear and succeeds, and a loop
// device reused by another test must not be detached by us.
func detach(t testing.TB, losetup, dev, image string) {
	t.Helper()
	if backing := loopBackingFile(dev); backing != image {
		if backing != "" {
			t.Errorf("testfs: %s now backs %s, not our %s; leaving it alone", dev, backing, image)
		}
		return
	}
	if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
		t.Errorf("testfs: losetup -d %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
		return
	}
	// A process that has just exited (ostree admin, a booted container) or
	// udev's blkid can keep the device open for a while on a loaded machine;
	// autoclear then detaches it once they let go.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if loopBackingFile(dev) != image {
			return
		}
	}
	t.Errorf("testfs: %s still attached to %s after losetup -d", dev, image)
}

// loopBackingFile returns the file a loop device is attached to, or "" if
// it is detached. The kernel appends " (deleted)" once the image is removed.
func loopBackingFile(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
}

func mountedOrFalse(dir string) bool {
	m, _ := isMounted(dir)
	return m
}

// isMounted reports whether dir is a mount point in this mount namespace.
func isMounted(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// Field 5 is the mount point, with space, tab, newline and backslash
		// octal-escaped.
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, sc.Err()
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Shutdown cuts the filesystem off as a power loss would: `xfs_io -x -c
// shutdown` stops it without flushing its log, so what the journal had
// not committed is lost, and every later I/O on it fails with EIO. Only
// XFS has it. Remount brings it back.
func (fs *FS) Shutdown(t testing.TB) {
	t.Helper()
	if fs.Type != "xfs" {
		t.Fatalf("testfs: Shutdown needs XFS, not %s", fs.Type)
	}
	xfsIO := RequireTool(t, "xfs_io")
	if out, err := exec.Command(xfsIO, "-x", "-c", "shutdown", fs.Dir).CombinedOutput(); err != nil {
		t.Fatalf("testfs: xfs_io -x -c shutdown %s: %v: %s", fs.Dir, err, strings.TrimSpace(string(out)))
	}
}

// Remount unmounts the filesystem and mounts it again, which replays its
// journal: after Shutdown, the state a host finds after a power cut.
// Nothing may still have a file open on it.
//
// A process that just exited may still hold the old mount for a moment
// (its mount namespace, ostree admin's for one, is torn down
// asynchronously); mounting the device then gives back the same
// shut-down superblock. So the new mount is checked, and made again until
// it is a fresh one.
func (fs *FS) Remount(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		unmount(t, fs.Dir)
		if t.Failed() {
			t.FailNow()
		}
		if err := retryOnce(func() error { return unix.Mount(fs.Loop, fs.Dir, fs.Type, 0, "") }); err != nil {
			t.Fatalf("testfs: mount %s (%s) on %s again: %v", fs.Loop, fs.Type, fs.Dir, err)
		}
		_, err := os.ReadDir(fs.Dir)
		if err == nil {
			return
		}
		if !errors.Is(err, unix.EIO) || time.Now().After(deadline) {
			t.Fatalf("testfs: %s after mounting it again: %v", fs.Dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Crash is Shutdown then Remount.
func (fs *FS) Crash(t testing.TB) {
	t.Helper()
	fs.Shutdown(t)
	fs.Remount(t)
}

// FsyncNoise fsyncs a small file on the filesystem every 20 ms, as
// journald does on a host, until the returned stop is called. Each fsync
// commits the journal, names included: this is what makes a name durable
// ahead of the bytes it names when a writer links before its data is on
// disk. Errors (EIO after Shutdown) are ignored.
func (fs *FS) FsyncNoise(t testing.TB) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	finished := make(chan struct{})
	path := fs.Path(".fsync-noise")
	go func() {
		defer close(finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
				fmt.Fprintf(f, "%d\n", i)
				f.Sync()
				f.Close()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once bool
	stop = func() {
		if !once {
			once = true
			close(done)
			<-finished
		}
	}
	t.Cleanup(stop)
	return stop
}
