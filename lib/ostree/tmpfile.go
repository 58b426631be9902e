package ostree

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// tmpObject is a file being prepared in repo/tmp. It is an anonymous
// O_TMPFILE when the filesystem allows (a crash leaves nothing behind), or
// else a named file that ostree's tmp cleanup would eventually remove.
type tmpObject struct {
	f     *os.File
	named string // path relative to the repo dir; "" for O_TMPFILE
}

func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *Repo) newTmpObject() (*tmpObject, error) {
	fd, err := unix.Openat(r.dirFD, "tmp", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err == nil {
		return &tmpObject{f: os.NewFile(uintptr(fd), filepath.Join(r.path, "tmp", "(tmpfile)"))}, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("O_TMPFILE in %s/tmp: %w", r.path, err)
	}
	name := "tmp/tmpobject-" + randomSuffix()
	fd, err = unix.Openat(r.dirFD, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s/%s: %w", r.path, name, err)
	}
	return &tmpObject{f: os.NewFile(uintptr(fd), filepath.Join(r.path, name)), named: name}, nil
}

// linkInto gives the temp file its final name, never replacing an existing
// file: an existing object of that name is by definition the same object,
// so existed=true is success.
func (r *Repo) linkInto(t *tmpObject, dest string) (existed bool, err error) {
	if t.named != "" {
		err = unix.Linkat(r.dirFD, t.named, r.dirFD, dest, 0)
	} else {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(t.f.Fd())), r.dirFD, dest, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.ENOENT) {
			// No /proc: AT_EMPTY_PATH does the same but needs CAP_DAC_READ_SEARCH.
			err = unix.Linkat(int(t.f.Fd()), "", r.dirFD, dest, unix.AT_EMPTY_PATH)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("linking %s/%s: %w", r.path, dest, err)
	}
	return false, nil
}

func (t *tmpObject) discard(r *Repo) {
	t.f.Close()
	if t.named != "" {
		unix.Unlinkat(r.dirFD, t.named, 0)
	}
}

// setMtimeZero sets mtime to 0 and leaves atime, as ostree does for every
// file object (checkouts hardlink them, so deployed files show mtime 0).
func setMtimeZero(f *os.File) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 0, Nsec: 0}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), ts, 0)
}

// writeFileAtomic replaces dest with data: a temp file in tmpDir (same
// filesystem), fsynced, renamed over, and dest's directory fsynced, so
// readers see the old or the new content and a crash cannot leave a
// truncated file. A leftover temp lands in tmpDir, never beside dest
// (ostree would list a stray file in refs/ as a ref).
func writeFileAtomic(tmpDir, dest string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(tmpDir, "."+filepath.Base(dest)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(dest))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
