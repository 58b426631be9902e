// Package dedupe shares the extents of files whose bytes are equal with
// FIDEDUPERANGE: the kernel locks both files, compares the bytes and only
// then points the destination at the source's blocks, so content can never
// change. It is how a classic ostree commit (written by ostree before the
// host was bound to composefs) comes to share its file objects with the
// composefs repository in place, leaving the deployment untouched.
package dedupe

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/reflink"
)

// ErrDiffers: the kernel compared the two files and their bytes differ.
var ErrDiffers = errors.New("contents differ")

// ErrUnsupported: the filesystem cannot share extents (ext4, tmpfs) or
// the two files are on different filesystems. It is reflink.ErrRefused,
// so callers treat a refused dedupe as they treat a refused FICLONE.
var ErrUnsupported = reflink.ErrRefused

// maxChunk bounds one FIDEDUPERANGE request: filesystems cap it (btrfs at
// 16 MiB) and report how much they did, so larger files take several.
const maxChunk = 16 << 20

// File makes every byte of dst share src's extents. Both must have the
// same size; dst may be open read-only (root may dedupe into any file it
// can open). It returns the bytes the kernel reported deduplicated.
func File(dst, src *os.File) (int64, error) {
	var sst, dst2 unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &sst); err != nil {
		return 0, &os.PathError{Op: "fstat", Path: src.Name(), Err: err}
	}
	if err := unix.Fstat(int(dst.Fd()), &dst2); err != nil {
		return 0, &os.PathError{Op: "fstat", Path: dst.Name(), Err: err}
	}
	if sst.Size != dst2.Size {
		return 0, fmt.Errorf("%s: %w (size %d, %s has %d)", dst.Name(), ErrDiffers, dst2.Size, src.Name(), sst.Size)
	}
	var done int64
	for off := int64(0); off < sst.Size; {
		n := sst.Size - off
		if n > maxChunk {
			n = maxChunk
		}
		req := unix.FileDedupeRange{
			Src_offset: uint64(off),
			Src_length: uint64(n),
			Info:       []unix.FileDedupeRangeInfo{{Dest_fd: int64(dst.Fd()), Dest_offset: uint64(off)}},
		}
		if err := unix.IoctlFileDedupeRange(int(src.Fd()), &req); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTTY) {
				return done, fmt.Errorf("%s: %w (%v)", dst.Name(), ErrUnsupported, err)
			}
			return done, fmt.Errorf("%s: FIDEDUPERANGE from %s: %w", dst.Name(), src.Name(), err)
		}
		info := req.Info[0]
		switch {
		case info.Status == unix.FILE_DEDUPE_RANGE_DIFFERS:
			return done, fmt.Errorf("%s at offset %d: %w from %s", dst.Name(), off, ErrDiffers, src.Name())
		case info.Status < 0:
			errno := unix.Errno(-info.Status)
			if errno == unix.EOPNOTSUPP || errno == unix.EINVAL && off == 0 && done == 0 && info.Bytes_deduped == 0 && isUnsupportedFS(dst) {
				return done, fmt.Errorf("%s: %w (%v)", dst.Name(), ErrUnsupported, errno)
			}
			return done, fmt.Errorf("%s: FIDEDUPERANGE from %s at offset %d: %w", dst.Name(), src.Name(), off, errno)
		case info.Bytes_deduped == 0:
			return done, fmt.Errorf("%s: FIDEDUPERANGE from %s at offset %d made no progress", dst.Name(), src.Name(), off)
		}
		done += int64(info.Bytes_deduped)
		off += int64(info.Bytes_deduped)
	}
	return done, nil
}

// isUnsupportedFS tells EINVAL from a filesystem without shared extents
// (whose dedupe the VFS rejects before the driver sees it) from EINVAL
// for a bad request.
func isUnsupportedFS(f *os.File) bool {
	var st unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &st) != nil {
		return false
	}
	switch st.Type {
	case unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC:
		return false
	}
	return true
}
