package reflink

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fsKey identifies one mount of one filesystem. st_dev alone is not enough:
// loop devices and anonymous device numbers are reused as soon as a
// filesystem is unmounted, so an XFS on /dev/loop0 and the ext4 mounted there
// next would share an answer. The unique mount ID (Linux ≥ 6.8) is never
// reused; on older kernels the plain mount ID still narrows the collision.
type fsKey struct {
	dev, mountID uint64
}

var (
	supportedMu    sync.Mutex
	supportedCache = map[fsKey]bool{}
	probeCount     atomic.Int64 // lets tests prove the cache is used
)

// Supported reports whether the filesystem holding dir supports FICLONE, by
// trying it on two unnamed files in dir (so dir must be writable). The answer
// is cached per mounted filesystem; errors other than a refusal are not.
func Supported(dir string) (bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_MNT_ID_UNIQUE|unix.STATX_MNT_ID, &stx); err != nil {
		return false, fmt.Errorf("reflink support in %s: %w", dir, &os.PathError{Op: "statx", Path: dir, Err: err})
	}
	key := fsKey{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor)}
	if stx.Mask&(unix.STATX_MNT_ID_UNIQUE|unix.STATX_MNT_ID) != 0 {
		key.mountID = stx.Mnt_id
	}

	supportedMu.Lock()
	ok, cached := supportedCache[key]
	supportedMu.Unlock()
	if cached {
		return ok, nil
	}
	// Two goroutines may probe the same filesystem at once; both get the
	// same answer, and probing is cheap, so no need to serialise them.
	ok, err := probe(dir)
	if err != nil {
		return false, fmt.Errorf("reflink support in %s: %w", dir, err)
	}
	supportedMu.Lock()
	supportedCache[key] = ok
	supportedMu.Unlock()
	return ok, nil
}

func probe(dir string) (bool, error) {
	probeCount.Add(1)
	open := func() (*os.File, error) {
		f, name, err := createUnlinked(dir, "reflink-probe")
		if err == nil && name != "" {
			err = os.Remove(name) // the open descriptor is all the probe needs
		}
		return f, err
	}
	src, err := open()
	if err != nil {
		return false, err
	}
	defer src.Close()
	dst, err := open()
	if err != nil {
		return false, err
	}
	defer dst.Close()

	// A whole block of non-zero data, so no filesystem can satisfy the clone
	// by recording a hole or an inline extent instead of sharing a block.
	if _, err := src.Write(bytes.Repeat([]byte{0xcf}, 4096)); err != nil {
		return false, err
	}
	err = ficlone(int(dst.Fd()), int(src.Fd()))
	runtime.KeepAlive(src)
	runtime.KeepAlive(dst)
	switch {
	case err == nil:
		return true, nil
	case isRefusal(err):
		return false, nil
	}
	return false, fmt.Errorf("FICLONE: %w (%s)", err, errnoName(err))
}
