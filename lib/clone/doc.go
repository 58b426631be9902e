// Package clone copies the objects of an object list into another store by
// FICLONE and writes the list again, annotated with the new store's ids.
//
// ToOstree is `cfs-clone --to ostree`: each regular file becomes a bare (or
// bare-user) ostree file object whose extents are shared with the composefs
// object named by its src, with the entry's uid/gid/mode/xattrs applied to
// the new inode. It never hardlinks: one inode has one SELinux label, and
// the same bytes can carry different labels at different paths.
//
// Each file's src is read once, by several workers in parallel, computing
// both its fs-verity digest (checked against the entry's composefs id) and
// the ostree checksum. The object is cloned only when that checksum is not
// already in the repository, so re-cloning an update whose files mostly
// exist costs one read per file and no writes. lib/ostree then reads the
// new object back once to name it by the bytes actually in it, which also
// catches a src that changed after it was verified.
package clone
