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

	"github.com/cfs-project/cfs/lib/atomicfile"
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
	f, ok, err := atomicfile.OpenUnnamed(r.dirFD, "tmp", 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	if ok {
		return &tmpObject{f: f}, nil
	}
	name := "tmp/tmpobject-" + randomSuffix()
	fd, err := unix.Openat(r.dirFD, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
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
		err = atomicfile.Link(t.f, r.dirFD, dest)
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
