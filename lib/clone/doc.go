// Package clone copies the objects of an object list into another store by
// FICLONE and writes the list again, annotated with the new store's ids.
//
// ToOstree is `cfs-clone --to ostree`: each regular file becomes a bare (or
// bare-user) ostree file object whose extents are shared with the composefs
// object named by its src, with the entry's uid/gid/mode/xattrs applied to
// the new inode. It never hardlinks: one inode has one SELinux label, and
// the same bytes can carry different labels at different paths.
package clone
