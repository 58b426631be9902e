package oci

import (
	"encoding/binary"
	"fmt"
)

// The on-disk layouts of security.capability (linux/capability.h,
// struct vfs_cap_data and vfs_ns_cap_data).
const (
	capRevisionMask = 0xff000000
	capRevision2    = 0x02000000
	capRevision3    = 0x03000000
	capSize2        = 4 + 2*2*4 // magic_etc, then permitted and inheritable, two 32-bit words each
	capSize3        = capSize2 + 4
	capNoRootID     = 0xffffffff // (uid_t)-1, which no namespace maps
)

// checkCapability refuses a security.capability value the kernel would
// refuse to set: it accepts revision 2 (20 bytes) and revision 3 (24 bytes,
// with the root uid of the owning namespace), as cap_convert_nscap does.
// The image would mount with any bytes, but cfs-clone could then never
// write the file into ostree or containers-storage, so a pull refuses it
// before anything is tagged.
func checkCapability(v []byte) error {
	if len(v) < 4 {
		return fmt.Errorf("security.capability is %d bytes, too short for a vfs_cap_data header", len(v))
	}
	magic := binary.LittleEndian.Uint32(v)
	rev := magic & capRevisionMask
	switch {
	case rev == capRevision2 && len(v) == capSize2:
	case rev == capRevision3 && len(v) == capSize3:
		if binary.LittleEndian.Uint32(v[capSize2:]) == capNoRootID {
			return fmt.Errorf("security.capability revision 3 names root uid %d, which no user namespace maps", uint32(capNoRootID))
		}
	case rev == capRevision2 || rev == capRevision3:
		return fmt.Errorf("security.capability revision %d is %d bytes, want %d", rev>>24, len(v), map[uint32]int{capRevision2: capSize2, capRevision3: capSize3}[rev])
	default:
		return fmt.Errorf("security.capability revision %d (%d bytes) is not one the kernel sets: revision 2 (20 bytes) or 3 (24 bytes)", rev>>24, len(v))
	}
	return nil
}
