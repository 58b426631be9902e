package reflink

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FIEMAP is not in x/sys; these mirror <linux/fiemap.h> and <linux/fs.h>.
const (
	fsIocFiemap    = 0xC020660B
	fiemapFlagSync = 0x1 // flush delayed allocation first, or fresh data shows as unmapped
	fiemapBatch    = 64
)

// Extent flags (fe_flags) that callers care about.
const (
	ExtentLast      uint32 = 0x1
	ExtentUnknown   uint32 = 0x2
	ExtentDelalloc  uint32 = 0x4
	ExtentInline    uint32 = 0x200 // data lives in metadata (btrfs small files): never shared
	ExtentUnwritten uint32 = 0x800
	ExtentShared    uint32 = 0x2000
)

// ErrFiemapUnsupported means the filesystem (tmpfs, for one) cannot map
// extents, so whether anything is shared is unknown rather than "no".
var ErrFiemapUnsupported = errors.New("filesystem does not support FIEMAP")

// Extent is one mapped range of a file, as FIEMAP reports it. Lengths are
// in bytes but block-granular, so the last extent may reach past EOF.
type Extent struct {
	Logical, Physical, Length uint64
	Flags                     uint32
}

// Shared reports whether the filesystem says other files use these blocks too.
func (e Extent) Shared() bool { return e.Flags&ExtentShared != 0 }

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemapRequest struct {
	Start, Length                        uint64
	Flags, MappedExtents, ExtentCount, _ uint32
	Extents                              [fiemapBatch]fiemapExtent
}

// Extents maps all of f's data, asking the kernel in batches until it marks
// the last extent. Holes do not appear.
func Extents(f *os.File) ([]Extent, error) {
	fd := f.Fd()
	defer runtime.KeepAlive(f)
	var out []Extent
	req := new(fiemapRequest)
	for start, flags := uint64(0), uint32(fiemapFlagSync); ; flags = 0 {
		*req = fiemapRequest{Start: start, Length: ^uint64(0), Flags: flags, ExtentCount: fiemapBatch}
		if err := fiemap(fd, req); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
				return nil, fmt.Errorf("FIEMAP %s (%s): %w: %w", f.Name(), fsName(int(fd)), ErrFiemapUnsupported, err)
			}
			return nil, fmt.Errorf("FIEMAP %s: %w (%s)", f.Name(), err, errnoName(err))
		}
		n := min(int(req.MappedExtents), fiemapBatch)
		if n == 0 {
			return out, nil
		}
		for _, e := range req.Extents[:n] {
			out = append(out, Extent{Logical: e.Logical, Physical: e.Physical, Length: e.Length, Flags: e.Flags})
		}
		last := req.Extents[n-1]
		if last.Flags&ExtentLast != 0 {
			return out, nil
		}
		next := last.Logical + last.Length
		if next <= start {
			return nil, fmt.Errorf("FIEMAP %s: no progress past offset %d", f.Name(), start)
		}
		start = next
	}
}

func fiemap(fd uintptr, req *fiemapRequest) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, fsIocFiemap, uintptr(unsafe.Pointer(req)))
		if errno != unix.EINTR {
			if errno != 0 {
				return errno
			}
			return nil
		}
	}
}

// SharedBytes reports how many of f's bytes lie in extents marked SHARED and
// how many are mapped at all, both counted within f's size so that a fully
// shared file gives shared == total == size (holes make total smaller).
// On tmpfs and the like the error matches ErrFiemapUnsupported.
func SharedBytes(f *os.File) (shared, total int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	extents, err := Extents(f)
	if err != nil {
		return 0, 0, err
	}
	size := uint64(fi.Size())
	for _, e := range extents {
		if e.Logical >= size {
			continue
		}
		n := int64(min(e.Length, size-e.Logical))
		total += n
		if e.Shared() {
			shared += n
		}
	}
	return shared, total, nil
}
