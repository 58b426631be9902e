// Package atomicfile makes files appear under their name only when they
// are complete: unnamed O_TMPFILE files linked into place, and whole-file
// replacement by rename with the fsyncs that make it durable.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// OpenUnnamed opens a writable file without a name (O_TMPFILE) on the
// filesystem of dir, which is relative to dirfd (unix.AT_FDCWD for the
// working directory). perm goes through the umask. ok is false, with no
// error, when the kernel or filesystem has no O_TMPFILE; the caller then
// makes a named temporary file of its own kind.
func OpenUnnamed(dirfd int, dir string, perm uint32) (f *os.File, ok bool, err error) {
	fd, err := unix.Openat(dirfd, dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, perm)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)")), true, nil
	}
	// Filesystems without O_TMPFILE say EOPNOTSUPP; old kernels, which
	// do not know the flag, EISDIR or EINVAL.
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return nil, false, nil
	}
	return nil, false, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
}

// Link gives an unnamed file from OpenUnnamed the name dst, relative to
// dirfd. Like link(2) it never replaces an existing file: that is EEXIST,
// returned as the bare errno for the caller to name its paths.
//
// It links by descriptor (AT_EMPTY_PATH), which needs CAP_DAC_READ_SEARCH
// and costs no path walk through /proc; without that capability (the
// kernel then says ENOENT, remembered) through /proc/self/fd.
func Link(f *os.File, dirfd int, dst string) error {
	defer runtime.KeepAlive(f)
	if !noEmptyPathLink.Load() {
		err := unix.Linkat(int(f.Fd()), "", dirfd, dst, unix.AT_EMPTY_PATH)
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		if _, serr := os.Stat("/proc/self/fd"); serr != nil {
			return err // no /proc either (early boot, a chroot)
		}
		noEmptyPathLink.Store(true)
	}
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), dirfd, dst, unix.AT_SYMLINK_FOLLOW)
}

// noEmptyPathLink is set once linkat(AT_EMPTY_PATH) was refused.
var noEmptyPathLink atomic.Bool

// WriteFile replaces path with data so that a reader sees the old or the
// new content and a crash cannot leave a truncated file: a temporary file
// in tmpDir (same filesystem as path; "" for path's own directory),
// fsynced, renamed over path, and path's directory fsynced.
func WriteFile(tmpDir, path string, data []byte, perm os.FileMode) error {
	if tmpDir == "" {
		tmpDir = filepath.Dir(path)
	}
	f, err := os.CreateTemp(tmpDir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	// CreateTemp makes 0600.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	done = true
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the names created in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// WriteFileAt is WriteFile relative to the directory open as dirfd
// (dirName names it in messages): the temporary file is made in that
// directory, and the name is replaced with renameat, which replaces a
// symlink planted there rather than following it.
func WriteFileAt(dirfd int, dirName, name string, data []byte, perm os.FileMode) error {
	path := filepath.Join(dirName, name)
	var tmp string
	var fd int
	var err error
	for i := 0; i < 100; i++ {
		var b [8]byte
		rand.Read(b[:])
		tmp = "." + name + ".tmp-" + hex.EncodeToString(b[:])
		fd, err = unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dirName, tmp))
	done := false
	defer func() {
		if !done {
			f.Close()
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		done = true
		return fmt.Errorf("writing %s: %w", path, err)
	}
	done = true
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("fsync %s: %w", dirName, err)
	}
	return nil
}

// TrimPreallocation gives back the blocks a filesystem reserved past the
// end of a file written through f, by truncating it to its own size. XFS
// reserves space beyond EOF while a file grows (speculative
// preallocation) and normally frees it on the last close of a writable
// descriptor, but not for a file that has no name at that close (an
// O_TMPFILE file, nlink 0) nor at the close of a read-only descriptor: a
// file written unnamed and linked later keeps the reservation until the
// inode leaves the cache or a background scan minutes later, which leaves
// a store of many such files a third larger on disk than its content.
// Call it before closing the last writable descriptor; on filesystems
// that do not preallocate it changes nothing. Files below 64 KiB are left
// alone: XFS does not preallocate for them.
func TrimPreallocation(f *os.File, size int64) error {
	if size < 64<<10 {
		return nil
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("trimming the preallocation of %s: %w", f.Name(), err)
	}
	return nil
}
