package reflink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
)

// ErrRefused is matched (errors.Is) by every error meaning "this filesystem,
// or this pair of filesystems, will not share extents", as opposed to an I/O
// error or a bad argument.
var ErrRefused = errors.New("FICLONE refused")

// RefusedError is what Always returns when FICLONE is refused. It unwraps to
// the errno, so errors.Is(err, unix.EXDEV) works, and matches ErrRefused.
type RefusedError struct {
	Dst, Src     string
	DstFS, SrcFS string // filesystem type names, e.g. "xfs", "ext4"
	Err          error  // the errno FICLONE returned
}

func (e *RefusedError) Error() string {
	var why string
	if errors.Is(e.Err, unix.EXDEV) {
		why = fmt.Sprintf("source (%s) and destination (%s) are on different filesystems, which cannot share extents", e.SrcFS, e.DstFS)
	} else {
		why = e.DstFS + " filesystem refused FICLONE"
	}
	return fmt.Sprintf("reflink %s from %s: %s: %v (%s)",
		e.Dst, e.Src, why, e.Err, errnoName(e.Err))
}

func (e *RefusedError) Unwrap() error { return e.Err }

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// isRefusal tells "cannot clone here" from real failures. EINVAL belongs to
// the former: XFS and btrfs use it for files that can never be cloned (DAX,
// realtime, swap, unaligned ranges). EIO, ENOSPC, EBADF and the like are not
// refusals, and Auto must not hide them behind a copy.
func isRefusal(err error) bool {
	for _, errno := range []unix.Errno{unix.EOPNOTSUPP, unix.ENOTTY, unix.ENOSYS, unix.EXDEV, unix.EINVAL, unix.ETXTBSY} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// ficlone retries EINTR, which a large clone can see when a signal arrives.
func ficlone(dstFd, srcFd int) error {
	for {
		err := unix.IoctlFileClone(dstFd, srcFd)
		if err != unix.EINTR {
			return err
		}
	}
}

// CloneFile replaces dst's content with src's: with FICLONE unless policy is
// Never, by copying the bytes if policy is Auto and FICLONE is refused.
// dst must be open for writing and src for reading; their file offsets are
// left where they were. On error dst's content is unspecified (it may have
// been truncated).
func CloneFile(dst, src *os.File, policy Policy) (Result, error) {
	return cloneFile(dst, src, dst.Name(), src.Name(), policy)
}

// cloneFile takes the names separately because Clone's dst is an unnamed
// O_TMPFILE until it is linked into place.
func cloneFile(dst, src *os.File, dstName, srcName string, policy Policy) (Result, error) {
	if _, ok := policyNames[policy]; !ok {
		return 0, fmt.Errorf("reflink %s from %s: invalid policy %d", dstName, srcName, int(policy))
	}
	dstFd, srcFd := int(dst.Fd()), int(src.Fd())
	defer runtime.KeepAlive(dst)
	defer runtime.KeepAlive(src)

	var dstSt, srcSt unix.Stat_t
	if err := unix.Fstat(srcFd, &srcSt); err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstName, srcName, err)
	}
	if err := unix.Fstat(dstFd, &dstSt); err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstName, srcName, err)
	}
	if srcSt.Mode&unix.S_IFMT != unix.S_IFREG || dstSt.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, fmt.Errorf("reflink %s from %s: both must be regular files", dstName, srcName)
	}
	// Truncating dst below would destroy the source.
	if srcSt.Dev == dstSt.Dev && srcSt.Ino == dstSt.Ino {
		return 0, fmt.Errorf("reflink %s from %s: source and destination are the same file", dstName, srcName)
	}
	// FICLONE only ever extends dst, so the tail of a longer dst would
	// survive it; and XFS/btrfs refuse to clone an unaligned source EOF into
	// the middle of dst. Starting empty avoids both. A dst that is empty
	// already (a new file) is left alone: a truncate is a filesystem
	// transaction even when it changes nothing.
	if dstSt.Size != 0 {
		if err := unix.Ftruncate(dstFd, 0); err != nil {
			return 0, fmt.Errorf("reflink %s from %s: truncate destination: %w", dstName, srcName, err)
		}
	}

	if policy != Never {
		err := ficlone(dstFd, srcFd)
		if err == nil {
			return Cloned, nil
		}
		if !isRefusal(err) {
			return 0, fmt.Errorf("reflink %s from %s: FICLONE: %w (%s)", dstName, srcName, err, errnoName(err))
		}
		if policy == Always {
			return 0, &RefusedError{Dst: dstName, Src: srcName, DstFS: fsName(dstFd), SrcFS: fsName(srcFd), Err: err}
		}
	}
	if err := copyBytes(dst, src, srcSt.Size); err != nil {
		return 0, fmt.Errorf("copy %s to %s: %w", srcName, dstName, err)
	}
	return Copied, nil
}

const copyBufferSize = 1 << 20

// copyBytes copies size bytes with pread/pwrite, skipping the source's holes
// (SEEK_DATA/SEEK_HOLE) so a sparse file stays sparse, and sets dst's size at
// the end so trailing holes and empty files come out right.
func copyBytes(dst, src *os.File, size int64) error {
	srcFd := int(src.Fd())
	defer runtime.KeepAlive(src)
	// SEEK_DATA moves the shared file offset; callers may still be reading.
	if pos, err := unix.Seek(srcFd, 0, io.SeekCurrent); err == nil {
		defer unix.Seek(srcFd, pos, io.SeekStart)
	}

	buf := make([]byte, copyBufferSize)
	for off := int64(0); off < size; {
		data, err := unix.Seek(srcFd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // nothing but a hole up to EOF
		}
		end := size
		if err != nil {
			data = off // cannot tell holes apart: copy the rest as data
		} else if hole, err := unix.Seek(srcFd, data, unix.SEEK_HOLE); err == nil {
			end = min(hole, size)
		}
		if data >= size {
			break
		}
		if err := copyRange(dst, src, data, end, buf); err != nil {
			return err
		}
		off = end
	}
	if err := dst.Truncate(size); err != nil {
		return err
	}
	return nil
}

func copyRange(dst, src *os.File, off, end int64, buf []byte) error {
	for off < end {
		chunk := buf[:min(int64(len(buf)), end-off)]
		n, err := src.ReadAt(chunk, off)
		if err == io.EOF && n < len(chunk) {
			return fmt.Errorf("source shrank to %d bytes while being copied", off+int64(n))
		}
		if err != nil && err != io.EOF {
			return err
		}
		if _, err := dst.WriteAt(chunk[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// Clone creates dstPath with srcPath's content and permission bits (exactly,
// not filtered by the umask; owner and xattrs are not copied). Like O_EXCL it
// fails if dstPath exists, and it never follows a symlink there.
//
// The content is built in an unnamed O_TMPFILE (or, where the filesystem
// lacks those, a hidden temporary file) and linked into place only when
// complete, so a reader never sees a partial dstPath and a failure leaves
// nothing behind. Clone does not fsync; callers that need durability must.
func Clone(dstPath, srcPath string, policy Policy) (Result, error) {
	src, err := os.Open(srcPath)
	if err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstPath, srcPath, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstPath, srcPath, err)
	}

	tmp, tmpName, err := createUnlinked(filepath.Dir(dstPath), filepath.Base(dstPath))
	if err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstPath, srcPath, err)
	}
	defer tmp.Close()
	if tmpName != "" {
		defer os.Remove(tmpName)
	}

	result, err := cloneFile(tmp, src, dstPath, srcPath, policy)
	if err != nil {
		return 0, err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstPath, srcPath, err)
	}
	// The name must not become durable before the bytes it names: after a
	// power loss a linked but unsynced file can come back empty.
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("reflink %s from %s: sync: %w", dstPath, srcPath, err)
	}
	if err := linkIntoPlace(tmp, tmpName, dstPath); err != nil {
		return 0, fmt.Errorf("reflink %s from %s: %w", dstPath, srcPath, err)
	}
	return result, nil
}

// testWithoutTmpfile lets tests take the path for filesystems without
// O_TMPFILE, which every filesystem the tests can mount supports.
var testWithoutTmpfile = false

// createUnlinked opens a writable file in dir that has no name yet (name
// "") or, where O_TMPFILE is unsupported, a hidden one the caller removes.
// Either way it is on dir's filesystem, which is what FICLONE cares about.
func createUnlinked(dir, base string) (*os.File, string, error) {
	if !testWithoutTmpfile {
		f, ok, err := atomicfile.OpenUnnamed(unix.AT_FDCWD, dir, 0o600)
		if ok || err != nil {
			return f, "", err
		}
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, "", err
	}
	return f, f.Name(), nil
}

// linkIntoPlace gives tmp the name dst; link(2) fails with EEXIST rather
// than replace an existing file, which rename(2) would do.
func linkIntoPlace(tmp *os.File, tmpName, dst string) error {
	if tmpName != "" {
		return os.Link(tmpName, dst)
	}
	if err := atomicfile.Link(tmp, unix.AT_FDCWD, dst); err != nil {
		return &os.LinkError{Op: "link", Old: "(unnamed temporary file)", New: dst, Err: err}
	}
	return nil
}
