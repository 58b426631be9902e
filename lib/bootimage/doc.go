// Package bootimage is what makes an image bootable as a composefs-native
// host, the way bootc and composefs-rs (composefs-boot) decide it:
//
//   - Detect finds the boot payload of a merged image tree: UKIs (PE
//     files named *.efi under /boot/EFI/Linux/ or /usr/lib/modules/<kver>/,
//     with addons in subdirectories such as <uki>.efi.extra.d/), or a
//     kernel and initramfs (/usr/lib/modules/<kver>/vmlinuz and
//     initramfs.img). Type 1 entries shipped in the image
//     (/boot/loader/entries/*.conf) are refused, as bootc refuses them.
//   - ParseUKI reads a UKI's PE sections with debug/pe. A UKI whose
//     .cmdline carries composefs=<id> is sealed: it boots only the boot
//     image whose fs-verity digest is <id>.
//   - TransformForBoot turns the image tree into the tree of its boot
//     image (composefs-rs transform_for_boot): /boot and /sysroot emptied,
//     every inode labelled from the image's own SELinux policy.
//   - Build and Write make the V1 EROFS of that tree. Its fs-verity digest
//     is the id on a native host's kernel command line (composefs=<id>),
//     and cfs-pull links it from the image's config stream as
//     RefBootImageV1, so composefs-rs's GC and ours keep it.
//
// A sealed UKI is not circular although it ships inside the image it
// seals: it lives under /boot, which the boot transform empties, so the
// boot image's digest does not depend on the UKI's bytes. An image builder
// computes the digest without the UKI, builds the UKI with it, and adds
// the UKI under /boot/EFI/Linux/ last. A UKI under /usr/lib/modules/ stays
// in the boot image and so cannot be sealed for it.
package bootimage
