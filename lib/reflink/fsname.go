package reflink

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Magic numbers x/sys does not define.
const (
	zfsSuperMagic      = 0x2fc12fc1
	bcachefsSuperMagic = 0xca451a4e
	fuseSuperMagic     = 0x65735546
	cifsSuperMagic     = 0xff534d42
	smb2SuperMagic     = 0xfe534d42
	erofsSuperMagic    = 0xe0f5e1e2
	ocfs2SuperMagic    = 0x7461636f
)

var fsNames = map[uint32]string{
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.EXT4_SUPER_MAGIC:      "ext4", // ext2 and ext3 share the magic; ext4 is what hosts run
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.RAMFS_MAGIC:           "ramfs",
	unix.SQUASHFS_MAGIC:        "squashfs",
	unix.MSDOS_SUPER_MAGIC:     "vfat",
	zfsSuperMagic:              "zfs",
	bcachefsSuperMagic:         "bcachefs",
	fuseSuperMagic:             "fuse",
	cifsSuperMagic:             "cifs",
	smb2SuperMagic:             "smb2",
	erofsSuperMagic:            "erofs",
	ocfs2SuperMagic:            "ocfs2",
}

// fsName names the filesystem holding fd, for error messages; it never
// fails, because a message is still useful without it.
func fsName(fd int) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "unknown"
	}
	if name, ok := fsNames[uint32(st.Type)]; ok {
		return name
	}
	return fmt.Sprintf("0x%x", uint32(st.Type))
}

// errnoName gives the symbolic name users search for. unix.ErrnoName says
// ENOTSUP for 95, but EOPNOTSUPP is what the FICLONE documentation uses.
func errnoName(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	if errno == unix.EOPNOTSUPP {
		return "EOPNOTSUPP"
	}
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return fmt.Sprintf("errno %d", int(errno))
}
