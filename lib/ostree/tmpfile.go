package ostree

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
)

// tmpObject is an object prepared in repo/tmp. It is an anonymous
// O_TMPFILE when the filesystem allows (a crash leaves nothing behind), or
// else a named file (or, for a bare symlink, the symlink itself) that
// ostree's tmp cleanup would eventually remove.
type tmpObject struct {
	f     *os.File // nil for a symlink
	tmpFD int      // repo/tmp (not owned)
	named string   // name in repo/tmp; "" for O_TMPFILE
}

func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newTmpObject creates the temporary file with perm (through the umask):
// the object's own permission bits where the caller can give them, so
// that setting them afterwards is usually not needed (see setMode).
//
// checksum, when the object's name is known before it is filled, puts
// the unnamed file in its final objects/XX/ directory rather than tmp/:
// XFS allocates a new inode in its parent directory's allocation group
// and keeps an O_TMPFILE on that group's unlinked list until it is
// linked, so with every object made in tmp/ all writers wait on one
// group's lock; objects/XX/ directories are spread over the groups. The
// file still gets its name only after the batch's syncfs (Flush), and a
// named fallback stays in tmp/, where nothing takes it for an object.
func (r *Repo) newTmpObject(perm uint32, checksum string) (*tmpObject, error) {
	tmpFD, err := r.writeDirs()
	if err != nil {
		return nil, err
	}
	dirFD, dirName := tmpFD, "tmp"
	if checksum != "" {
		if dirFD, err = r.objectDir(checksum); err != nil {
			return nil, err
		}
		dirName = "objects/" + checksum[:2]
	}
	f, ok, err := atomicfile.OpenUnnamed(dirFD, ".", perm)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", r.path, dirName, err)
	}
	if ok {
		return &tmpObject{f: f, tmpFD: tmpFD}, nil
	}
	name := "tmpobject-" + randomSuffix()
	fd, err := unix.Openat(tmpFD, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, fmt.Errorf("creating %s/tmp/%s: %w", r.path, name, err)
	}
	return &tmpObject{f: os.NewFile(uintptr(fd), r.path+"/tmp/"+name), tmpFD: tmpFD, named: name}, nil
}

// link gives the temp object the name dest in dirfd, never replacing an
// existing file (unix.EEXIST).
func (t *tmpObject) link(dirfd int, dest string) error {
	if t.named != "" {
		// linkat without AT_SYMLINK_FOLLOW links a symlink itself.
		return unix.Linkat(t.tmpFD, t.named, dirfd, dest, 0)
	}
	return atomicfile.Link(t.f, dirfd, dest)
}

// replace gives the temp object the name dest in dirfd, atomically
// replacing what is there (a damaged object, a planted symlink).
func (t *tmpObject) replace(dirfd int, dest string) error {
	tmp := ".tmp-replace-" + randomSuffix()
	if err := t.link(dirfd, tmp); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, dest); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return nil
}

// open opens another read-only descriptor on a temp regular file.
func (t *tmpObject) open() (*os.File, error) {
	if t.f == nil {
		return nil, errors.New("a symlink object has no content to open")
	}
	return os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(t.f.Fd())), os.O_RDONLY|unix.O_CLOEXEC, 0)
}

func (t *tmpObject) discard() {
	if t.f != nil {
		t.f.Close()
	}
	if t.named != "" {
		unix.Unlinkat(t.tmpFD, t.named, 0)
	}
}

// setMtimeZero sets mtime to 0 and leaves atime, as ostree does for every
// file object (checkouts hardlink them, so deployed files show mtime 0).
//
// utimensat with a NULL path sets the times of the descriptor itself (as
// futimens does): no walk through /proc per file.
func setMtimeZero(f *os.File) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 0, Nsec: 0}}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	runtime.KeepAlive(f)
	if errno != 0 {
		return &os.PathError{Op: "futimens", Path: f.Name(), Err: errno}
	}
	return nil
}

// setOwnerMode gives f the owner uid:gid and the permission bits mode
// (setuid, setgid and sticky included), with a system call only for what
// differs: each fchown or fchmod is a filesystem transaction, and a file
// the repository's owner creates with the object's permission bits
// usually has both already.
func setOwnerMode(f *os.File, uid, gid, mode uint32, chown bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	chowned := false
	if chown && (st.Uid != uid || st.Gid != gid) {
		if err := unix.Fchown(int(f.Fd()), int(uid), int(gid)); err != nil {
			return fmt.Errorf("fchown %d:%d: %w", uid, gid, err)
		}
		chowned = true
	}
	// chown clears setuid and setgid, so after one the mode is set
	// again whatever it was.
	if chowned || st.Mode&0o7777 != mode {
		if err := unix.Fchmod(int(f.Fd()), mode); err != nil {
			return fmt.Errorf("fchmod %#o: %w", mode, err)
		}
	}
	return nil
}
