package composefs

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// tmpFile is a file being written that has no name until it is complete:
// O_TMPFILE where the filesystem has it, otherwise a hidden name that
// composefs-rs would also recognise as transient (.tmp-object-…).
type tmpFile struct {
	*os.File
	dir   string
	named string // the hidden name in the fallback, "" with O_TMPFILE
}

func createTemp(dir string) (*tmpFile, error) {
	f, ok, err := atomicfile.OpenUnnamed(unix.AT_FDCWD, dir, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file in %s: %w", dir, err)
	}
	if ok {
		// O_TMPFILE applies the umask; objects must be world-readable 0644.
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			return nil, fmt.Errorf("making a temporary file in %s world-readable: %w", dir, err)
		}
		return &tmpFile{File: f, dir: dir}, nil
	}
	for i := 0; i < 100; i++ {
		name := filepath.Join(dir, ".tmp-object-"+randomName(12))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("creating a temporary file in %s: %w", dir, err)
		}
		t := &tmpFile{File: f, dir: dir, named: name}
		if err := f.Chmod(0o644); err != nil {
			t.discard()
			return nil, fmt.Errorf("making %s world-readable: %w", name, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("creating a temporary file in %s: no free name", dir)
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
func (t *tmpFile) reopenReadOnly() error {
	path := t.named
	if path == "" {
		path = "/proc/self/fd/" + strconv.Itoa(int(t.Fd()))
	}
	ro, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reopening a temporary file in %s read-only: %w", t.dir, err)
	}
	t.File.Close()
	t.File = ro
	return nil
}

// link gives the file its final name. It never replaces an existing file:
// an existing name returns an error matching os.ErrExist.
func (t *tmpFile) link(dst string) error {
	if t.named != "" {
		err := unix.Renameat2(unix.AT_FDCWD, t.named, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// No RENAME_NOREPLACE here: link(2) refuses an existing name too.
			if err = unix.Link(t.named, dst); err == nil {
				os.Remove(t.named)
			}
		}
		if err == nil {
			t.named = ""
			return nil
		}
		return &os.LinkError{Op: "rename", Old: t.named, New: dst, Err: err}
	}
	if err := atomicfile.Link(t.File, unix.AT_FDCWD, dst); err != nil {
		return &os.LinkError{Op: "linkat", Old: "(unnamed temporary file)", New: dst, Err: err}
	}
	return nil
}

// discard drops a file that will not be published.
func (t *tmpFile) discard() {
	t.File.Close()
	if t.named != "" {
		os.Remove(t.named)
	}
}

// publishFile writes data to dir/name atomically. With an algorithm it
// also tries to enable fs-verity first, so the name never appears without
// it where the filesystem supports it. The returned file is open
// read-only.
func publishFile(dir, name string, data []byte, alg fsverity.Algorithm) (*os.File, error) {
	t, err := createTemp(dir)
	if err != nil {
		return nil, err
	}
	if _, err := t.Write(data); err != nil {
		t.discard()
		return nil, err
	}
	if err := t.Sync(); err != nil {
		t.discard()
		return nil, err
	}
	if err := t.reopenReadOnly(); err != nil {
		t.discard()
		return nil, err
	}
	if alg != 0 {
		if _, err := enableVerity(t.File, alg, nil, false); err != nil {
			t.discard()
			return nil, err
		}
	}
	if err := t.link(filepath.Join(dir, name)); err != nil {
		t.discard()
		return nil, err
	}
	return t.File, nil
}
