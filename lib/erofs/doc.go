// Package erofs builds and reads composefs EROFS images: the metadata-only
// filesystem whose fs-verity digest a bootc host seals on its kernel command
// line, so the writer must reproduce mkcomposefs (--min-version=1) and
// composefs-rs V1 byte for byte; format version 0 is supported too.
//
// The model (Node) keeps every detail that reaches the image, including
// two that plain file trees lose:
//   - which name of a hardlinked inode is canonical (the non-link Node): the
//     inode is laid out at that name's position in the breadth-first order.
//     composefs-rs and dumpfiles make the first name in pre-order canonical;
//     NormalizeLinks establishes that for trees built in another order.
//   - the link count of non-directories: mkcomposefs takes it from the
//     dumpfile verbatim, composefs-rs counts names (Nlink 0 here).
//
// Writing applies composefs's rewrite on a private copy: user
// "trusted.overlay.*" xattrs are escaped, external files get the
// overlayfs metacopy and redirect xattrs, whiteouts (char 0:0) become
// escaped-whiteout regular files, the root gets "trusted.overlay.opaque"
// and 256 whiteout stubs 00..ff. Read undoes all of it, so image -> Read ->
// Write is the identity for the images this package and mkcomposefs write.
//
// Traps the format keeps for compatibility (see the tests for vectors):
// compact inodes require mtime equal to the image minimum (seconds and
// nanoseconds); the shared xattr table is sorted descending; chunk bits are
// bitlen(size-1); a chunk-based inode's block address overlaps its chunk
// format; a symlink's placement padding uses its pre-promotion size;
// feature_incompat stays 0.
package erofs
