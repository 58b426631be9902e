package fsverity

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// measureArg is struct fsverity_digest with room for the largest digest
// after its flexible array member.
type measureArg struct {
	hdr    unix.FsverityDigest
	digest [maxDigestSize]byte
}

// Enable turns on fs-verity for f with 4096-byte blocks and no salt
// (FS_IOC_ENABLE_VERITY). The kernel requires f to be open read-only with no
// writable descriptor open anywhere (else ETXTBSY). A file that already has
// verity is accepted as it is, so that re-running an interrupted import
// succeeds; its algorithm is not checked here (use Measure for that).
// Unsupported kernels or filesystems give an error wrapping ErrUnavailable
// and the errno.
func Enable(f *os.File, alg Algorithm) error {
	if !alg.valid() {
		return fmt.Errorf("fs-verity enable %s: invalid %v", f.Name(), alg)
	}
	arg := unix.FsverityEnableArg{
		Version:        1,
		Hash_algorithm: uint32(alg),
		Block_size:     BlockSize,
	}
	err := ioctlRetry(f, unix.FS_IOC_ENABLE_VERITY, unsafe.Pointer(&arg))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		// Devices and pipes answer ENOTTY or EINVAL, the same errnos as a
		// filesystem without verity; that is the caller's mistake, not a
		// missing feature, so keep it out of ErrUnavailable.
		if fi, statErr := f.Stat(); statErr == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("fs-verity enable %s: not a regular file: %w", f.Name(), err)
		}
	}
	return enableError(f.Name(), err)
}

// enableError turns FS_IOC_ENABLE_VERITY's errno into Enable's result.
func enableError(name string, err error) error {
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		return nil
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY),
		// Our version, algorithm and block size are all valid, so EINVAL
		// can only be the kernel refusing them here, e.g. kernels before
		// 6.3 with a 4096-byte block on 64 KiB pages.
		errors.Is(err, unix.EINVAL),
		// The kernel knows the algorithm but was built without it.
		errors.Is(err, unix.ENOPKG):
		return fmt.Errorf("fs-verity enable %s: %w (%w)", name, ErrUnavailable, err)
	}
	return fmt.Errorf("fs-verity enable %s: %w", name, err)
}

// Measure returns the algorithm and digest the kernel holds for f
// (FS_IOC_MEASURE_VERITY). The kernel takes it from the verity metadata
// without reading the file, so it is cheap even for large files. A file
// without verity gives ErrNotEnabled, an unsupported kernel or filesystem
// ErrUnavailable; both errors also wrap the errno.
func Measure(f *os.File) (Algorithm, []byte, error) {
	var arg measureArg
	arg.hdr.Size = maxDigestSize
	if err := measureError(f.Name(), ioctlRetry(f, unix.FS_IOC_MEASURE_VERITY, unsafe.Pointer(&arg))); err != nil {
		return 0, nil, err
	}
	alg := Algorithm(arg.hdr.Algorithm)
	if uint16(alg) != arg.hdr.Algorithm || !alg.valid() || int(arg.hdr.Size) != alg.Size() {
		return 0, nil, fmt.Errorf("fs-verity measure %s: kernel reported unknown algorithm %d with %d-byte digest",
			f.Name(), arg.hdr.Algorithm, arg.hdr.Size)
	}
	return alg, append([]byte(nil), arg.digest[:alg.Size()]...), nil
}

// measureError turns FS_IOC_MEASURE_VERITY's errno into Measure's error.
func measureError(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENODATA):
		return fmt.Errorf("fs-verity measure %s: %w (%w)", name, ErrNotEnabled, err)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY):
		return fmt.Errorf("fs-verity measure %s: %w (%w)", name, ErrUnavailable, err)
	}
	return fmt.Errorf("fs-verity measure %s: %w", name, err)
}

// ioctlRetry runs an ioctl whose argument is a pointer, through the
// descriptor's RawConn so that f cannot be closed underneath it, retrying on
// EINTR: enabling verity on a large file reads all of it and a signal may
// interrupt that.
func ioctlRetry(f *os.File, req uint, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	ctrlErr := rc.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
			if errno != unix.EINTR {
				return
			}
		}
	})
	if ctrlErr != nil {
		return ctrlErr
	}
	if errno != 0 {
		return errno
	}
	return nil
}
