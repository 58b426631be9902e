package composefs

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// tmpFile is a file being written that has no name until it is complete
// and durable: O_TMPFILE where the filesystem has it, otherwise a hidden
// name that composefs-rs would also recognise as transient
// (.tmp-object-…).
type tmpFile struct {
	*os.File
	dirfd int    // the directory it was created in (not owned)
	dir   string // that directory's path, for messages
	named string // the hidden name in the fallback, "" with O_TMPFILE
	// written says the bytes came through write(2) rather than FICLONE:
	// only then can the filesystem have reserved space past the end.
	written bool
}

const tmpPrefix = ".tmp-object-"

// createTemp makes a temporary file in dirfd. With checkMode, an
// unnamed file whose mode is already 0644 is not chmodded (see
// worldReadable).
func createTemp(dirfd int, dir string, checkMode bool) (*tmpFile, error) {
	f, ok, err := atomicfile.OpenUnnamed(dirfd, ".", 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file in %s: %w", dir, err)
	}
	if ok {
		if err := worldReadable(f, checkMode); err != nil {
			f.Close()
			return nil, fmt.Errorf("making a temporary file in %s world-readable: %w", dir, err)
		}
		return &tmpFile{File: f, dirfd: dirfd, dir: dir}, nil
	}
	for i := 0; i < 100; i++ {
		name := tmpPrefix + randomName(12)
		fd, err := unix.Openat(dirfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("creating a temporary file in %s: %w", dir, err)
		}
		f := os.NewFile(uintptr(fd), dir+"/"+name)
		t := &tmpFile{File: f, dirfd: dirfd, dir: dir, named: name}
		if err := f.Chmod(0o644); err != nil {
			t.discard()
			return nil, fmt.Errorf("making %s world-readable: %w", name, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("creating a temporary file in %s: no free name", dir)
}

// worldReadable makes an unnamed file 0644, as every object must be.
// O_TMPFILE applies the umask or, in a directory with a default ACL,
// that ACL instead. fchmod is a filesystem transaction (about 5 µs on
// XFS, 100k of them in a pull), while under the usual umask (022) and
// no default ACL the file is 0644 already: with check, the mode is read
// first (fstat, no transaction) and set only when it differs. Without
// check (the first file of a repository handle), it is set regardless,
// so that a process that may not chmod fails on its first object, not on
// the first one whose mode happens to be wrong.
func worldReadable(f *os.File, check bool) error {
	if check {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Mode&0o7777 == 0o644 {
			return nil
		}
	}
	return f.Chmod(0o644)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomName(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

// reopenReadOnly swaps the writable descriptor for a read-only one:
// FS_IOC_ENABLE_VERITY refuses a file that anyone has open for writing.
// A file written through write(2) first gives back the space reserved
// past its size bytes, which no later close would (atomicfile.TrimPreallocation).
func (t *tmpFile) reopenReadOnly(size int64) error {
	if t.written {
		if err := atomicfile.TrimPreallocation(t.File, size); err != nil {
			return err
		}
	}
	ro, err := t.open()
	if err != nil {
		return fmt.Errorf("reopening a temporary file in %s read-only: %w", t.dir, err)
	}
	t.File.Close()
	t.File = ro
	return nil
}

// open opens another read-only descriptor on the file.
func (t *tmpFile) open() (*os.File, error) {
	if t.named != "" {
		fd, err := unix.Openat(t.dirfd, t.named, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), t.dir+"/"+t.named), nil
	}
	return os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(t.Fd())), os.O_RDONLY|unix.O_CLOEXEC, 0)
}

// link gives the file the name dst in the directory dirfd. It never
// replaces an existing file: an existing name is unix.EEXIST.
func (t *tmpFile) link(dirfd int, dst string) error {
	if t.named != "" {
		err := unix.Renameat2(t.dirfd, t.named, dirfd, dst, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// No RENAME_NOREPLACE here: link(2) refuses an existing name too.
			if err = unix.Linkat(t.dirfd, t.named, dirfd, dst, 0); err == nil {
				unix.Unlinkat(t.dirfd, t.named, 0)
			}
		}
		if err == nil {
			t.named = ""
		}
		return err
	}
	return atomicfile.Link(t.File, dirfd, dst)
}

// replace gives the file the name dst in dirfd, atomically replacing
// whatever is there (a corrupt object, a planted symlink).
func (t *tmpFile) replace(dirfd int, dst string) error {
	if t.named != "" {
		if err := unix.Renameat(t.dirfd, t.named, dirfd, dst); err != nil {
			return err
		}
		t.named = ""
		return nil
	}
	tmp := tmpPrefix + randomName(12)
	if err := atomicfile.Link(t.File, dirfd, tmp); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, dst); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return nil
}

// discard drops the descriptor, and the hidden name of a file that was
// not published.
func (t *tmpFile) discard() {
	t.File.Close()
	if t.named != "" {
		unix.Unlinkat(t.dirfd, t.named, 0)
	}
}

// publishFile writes data to name in dirfd atomically and durably (fsync
// before the link). With an algorithm it also tries to enable fs-verity
// first, so the name never appears without it where the filesystem
// supports it. The returned file is open read-only.
func publishFile(dirfd int, dir, name string, data []byte, alg fsverity.Algorithm) (*os.File, error) {
	t, err := createTemp(dirfd, dir, false)
	if err != nil {
		return nil, err
	}
	t.written = true
	if _, err := t.Write(data); err != nil {
		t.discard()
		return nil, err
	}
	if err := t.reopenReadOnly(int64(len(data))); err != nil {
		t.discard()
		return nil, err
	}
	// After the trim, so that the sync covers the final extent map.
	if err := t.Sync(); err != nil {
		t.discard()
		return nil, err
	}
	if alg != 0 {
		if _, err := enableVerity(t.File, alg, nil, false); err != nil {
			t.discard()
			return nil, err
		}
	}
	if err := t.link(dirfd, name); err != nil {
		t.discard()
		return nil, &os.LinkError{Op: "linkat", Old: "(temporary file)", New: dir + "/" + name, Err: err}
	}
	return t.File, nil
}
