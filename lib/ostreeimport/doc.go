// Package ostreeimport turns an object list annotated by `cfs-clone --to
// ostree` into an ostree commit: dirmeta and dirtree objects built bottom-up
// as each directory closes, the commit with the metadata bootc/ostree-ext
// write for a composefs-synthesized image, and the image ref.
//
// It also owns bootc's conventions for that synthesis (conventions.go), which
// cfs-clone applies to the file objects it writes, so that both halves of the
// pipeline agree on every checksum.
//
// Memory: the tree writer holds one branch of the tree. The only structure
// that grows with the number of files is the path → checksum map hardlinks
// are resolved through (a hardlink may name any earlier file); it costs about
// 100 bytes per regular file, ~10 MB for 100k files.
package ostreeimport
