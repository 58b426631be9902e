// Package sysroot reads a bootc host's physical root (normally /sysroot, or
// a disk image mounted anywhere): which kind of host it is, its deployments
// and bootloader entries, and the unified-storage flags bootc keeps there.
//
// Everything follows bootc's own layout (ostree deployments under
// ostree/deploy/<stateroot>/deploy with BLS entries in boot/loader,
// composefs ones under state/deploy/<verity>; sysroottest builds both) so
// that a real host and a test fixture are read the same way. Nothing here trusts
// the files it reads: a malformed BLS entry, origin or flag file is an error
// naming that file, never a guess.
package sysroot
