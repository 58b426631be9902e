package testimage

import (
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// FileType is the kind of a node in the merged tree. Whiteouts never reach
// the merged tree, and the images hold no device nodes or FIFOs.
type FileType uint8

const (
	TypeDir FileType = iota + 1
	TypeRegular
	TypeSymlink
)

func (t FileType) String() string {
	switch t {
	case TypeDir:
		return "dir"
	case TypeRegular:
		return "file"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("FileType(%d)", uint8(t))
}

// Entry is one path of the filesystem an image unpacks to.
type Entry struct {
	// Path is relative to the root, slash-separated, without a leading
	// slash or "./" ("usr/bin/sh"). It may hold bytes that are not UTF-8.
	Path string
	Type FileType
	// Mode holds the permission bits plus setuid, setgid and sticky
	// (07777), as in st_mode without the file type.
	Mode    uint32
	UID     int
	GID     int
	ModTime time.Time
	// Xattrs are the extended attributes from SCHILY.xattr.* records,
	// values as raw bytes in a string.
	Xattrs map[string]string
	// Symlink is the target of a symlink, verbatim.
	Symlink string
	// Size and Digest (sha256) describe a regular file's content.
	Size   int64
	Digest digest.Digest
	// Hardlink is set on every path that shares its inode with other
	// paths: all of them carry the same value, the byte-wise smallest path
	// of the group. Empty for a file with a single name.
	Hardlink string
	// Implicit marks a directory that no tar entry describes: the unpacker
	// made it because a member lay below it, so its mode is 0755 and owner
	// 0:0 by convention and its mtime is whatever the unpacking time was.
	Implicit bool

	content *content
	inode   int
	layer   int
}

// Open returns the content of a regular file, regenerated on each call so
// that large files need not be kept in memory.
func (e *Entry) Open() io.Reader {
	if e.content == nil {
		return strings.NewReader("")
	}
	return e.content.reader()
}

// Tree is a merged filesystem keyed by Entry.Path. The root directory
// itself is not in it: unpackers create it, no layer describes it.
type Tree map[string]*Entry

// Paths returns the paths in byte-wise order, which places every directory
// before its descendants.
func (t Tree) Paths() []string {
	return slices.Sorted(maps.Keys(t))
}

// clone gives Image.ExpectedTree callers a copy they may modify without
// affecting later calls.
func (t Tree) clone() Tree {
	out := make(Tree, len(t))
	for p, e := range t {
		c := *e
		c.Xattrs = maps.Clone(e.Xattrs)
		out[p] = &c
	}
	return out
}

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// applier folds layers into a Tree following the OCI image-spec layer
// rules. It is written from the spec, not from any unpacker, so that it can
// serve as an independent oracle for them.
type applier struct {
	tree      Tree
	layer     int
	nextInode int
	inodes    map[string]int // tar path -> inode, for hardlinks within a layer
}

func newApplier() *applier {
	return &applier{tree: Tree{}, inodes: map[string]int{}}
}

func (a *applier) startLayer(index int) {
	a.layer = index
}

// removeTree deletes p and everything below it. It is used for whiteouts
// and for replacing a non-directory with anything, or anything with a
// non-directory.
func (a *applier) removeTree(p string) {
	delete(a.tree, p)
	prefix := p + "/"
	for q := range a.tree {
		if strings.HasPrefix(q, prefix) {
			delete(a.tree, q)
		}
	}
}

// apply adds one tar member. The member has already been validated by the
// builder, so inconsistencies here are programming errors.
func (a *applier) apply(m *member) {
	dir, base := path.Split(m.path)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == opaqueWhiteout:
		// Only content from lower layers disappears; siblings already
		// unpacked from this layer stay.
		prefix := dir + "/"
		for q, e := range a.tree {
			if strings.HasPrefix(q, prefix) && e.layer < a.layer {
				delete(a.tree, q)
			}
		}
		return
	case strings.HasPrefix(base, whiteoutPrefix):
		a.removeTree(path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)))
		return
	}

	a.ensureParents(m.path)
	if old, ok := a.tree[m.path]; ok && !(old.Type == TypeDir && m.typ == TypeDir) {
		a.removeTree(m.path)
	}
	e := &Entry{
		Path:    m.path,
		Type:    m.typ,
		Mode:    m.mode,
		UID:     m.uid,
		GID:     m.gid,
		ModTime: m.mtime,
		Xattrs:  maps.Clone(m.xattrs),
		Symlink: m.linkname,
		layer:   a.layer,
	}
	if e.Type == TypeRegular {
		if m.hardlinkTo != "" {
			target := a.tree[m.hardlinkTo]
			if target == nil || target.Type != TypeRegular {
				panic(fmt.Sprintf("testimage: hardlink %q to missing file %q", m.path, m.hardlinkTo))
			}
			e.inode = target.inode
			e.content = target.content
		} else {
			a.nextInode++
			e.inode = a.nextInode
			e.content = m.content
		}
		e.Size = e.content.size
	}
	a.tree[m.path] = e
}

// ensureParents models what every unpacker does for a member whose parent
// directories are not in the tar: it creates them with 0755, owned by root.
func (a *applier) ensureParents(p string) {
	dir := path.Dir(p)
	if dir == "." {
		return
	}
	if e, ok := a.tree[dir]; ok && e.Type == TypeDir {
		return
	}
	a.ensureParents(dir)
	a.removeTree(dir)
	a.tree[dir] = &Entry{Path: dir, Type: TypeDir, Mode: 0o755, Implicit: true, layer: a.layer}
}

// finish fills in the fields that depend on the whole merged tree: content
// digests (known once the layers were serialized) and hardlink groups
// (known once whiteouts removed some of their names).
func (a *applier) finish() Tree {
	groups := map[int][]string{}
	for p, e := range a.tree {
		if e.Type == TypeRegular {
			groups[e.inode] = append(groups[e.inode], p)
			e.Digest = e.content.computeDigest()
		}
	}
	for _, names := range groups {
		if len(names) < 2 {
			continue
		}
		first := slices.Min(names)
		for _, p := range names {
			a.tree[p].Hardlink = first
		}
	}
	return a.tree
}
