package fstree

import (
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/stream"
)

var kindMode = map[Kind]uint32{
	Regular:  erofs.TypeRegular,
	Symlink:  erofs.TypeSymlink,
	CharDev:  erofs.TypeChar,
	BlockDev: erofs.TypeBlock,
	Fifo:     erofs.TypeFifo,
	Socket:   erofs.TypeSocket,
}

func erofsXattrs(x map[string][]byte) []erofs.Xattr {
	if len(x) == 0 {
		return nil
	}
	out := make([]erofs.Xattr, 0, len(x))
	for name, value := range x {
		out = append(out, erofs.Xattr{Name: name, Value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func erofsStat(n *erofs.Node, st *Stat) {
	n.UID, n.GID = st.UID, st.GID
	n.MtimeSec, n.MtimeNsec = st.Mtime, st.MtimeNsec
	n.Xattrs = erofsXattrs(st.Xattrs)
}

// ToErofs converts the tree rooted at root into the EROFS writer's model.
// A hardlinked leaf becomes an inode at its first name in pre-order and
// links elsewhere, which is where composefs puts it. Names and object ids
// are shared with the tree, not copied.
func ToErofs(root *Dir) (*erofs.Node, error) {
	top := erofs.NewDir("", root.Mode)
	erofsStat(top, &root.Stat)
	first := make(map[*Leaf]*erofs.Node) // leaves that may have several names
	var walk func(d *Dir, parent *erofs.Node) error
	walk = func(d *Dir, parent *erofs.Node) error {
		for _, name := range d.Names() {
			var n *erofs.Node
			switch in := d.entries[name].(type) {
			case *Dir:
				n = erofs.NewDir(name, in.Mode)
				erofsStat(n, &in.Stat)
				if err := parent.AddChild(n); err != nil {
					return fmt.Errorf("%s: %w", childPath(parent, name), err)
				}
				if err := walk(in, n); err != nil {
					return err
				}
				continue
			case *Leaf:
				if f, ok := first[in]; ok {
					n = &erofs.Node{Name: name, LinkTo: f}
					break
				}
				n = leafNode(name, in)
				if in.maybeShared() {
					first[in] = n
				}
			}
			if err := parent.AddChild(n); err != nil {
				return fmt.Errorf("%s: %w", childPath(parent, name), err)
			}
		}
		return nil
	}
	if err := walk(root, top); err != nil {
		return nil, err
	}
	return top, nil
}

// WriteErofs writes the EROFS image of the tree rooted at root to w: the
// bytes erofs.Write makes of ToErofs(root), but built entry by entry, so
// that no erofs.Node tree of the whole image is ever held beside this one
// and the writer's inodes (about a quarter of the peak memory of a pull
// of 100k files). opts must name one version (erofs.NewBuilder).
//
// Every entry goes through one scratch Node (the Builder keeps none),
// and external files are added with their object id alone: a pull's
// heap is limited, and garbage made per entry (a Node and an object path
// each, 40% of what this allocated) made the collector run through the
// whole tree again and again while the image was made.
func WriteErofs(w io.Writer, root *Dir, opts erofs.Options) error {
	b, err := erofs.NewBuilder(opts)
	if err != nil {
		return err
	}
	var n erofs.Node
	var xs []erofs.Xattr
	setStat := func(st *Stat) {
		n.UID, n.GID = st.UID, st.GID
		n.MtimeSec, n.MtimeNsec = st.Mtime, st.MtimeNsec
		xs = appendXattrs(xs[:0], st.Xattrs)
		n.Xattrs = xs
	}
	n = erofs.Node{Mode: erofs.TypeDir | root.Mode&0o7777}
	setStat(&root.Stat)
	rootEntry, err := b.Root(&n)
	if err != nil {
		return err
	}
	rootEntry.Grow(root.Len())
	first := make(map[*Leaf]*erofs.Entry) // leaves that may have several names
	var walk func(d *Dir, parent *erofs.Entry) error
	walk = func(d *Dir, parent *erofs.Entry) error {
		for _, name := range d.Names() {
			switch in := d.entries[name].(type) {
			case *Dir:
				n = erofs.Node{Name: name, Mode: erofs.TypeDir | in.Mode&0o7777}
				setStat(&in.Stat)
				e, err := b.Add(parent, &n)
				if err != nil {
					return err
				}
				e.Grow(in.Len())
				if err := walk(in, e); err != nil {
					return err
				}
			case *Leaf:
				if f, ok := first[in]; ok {
					if err := b.Link(parent, name, f); err != nil {
						return err
					}
					continue
				}
				n = erofs.Node{Name: name, Mode: kindMode[in.Kind] | in.Mode&0o7777}
				setStat(&in.Stat)
				var e *erofs.Entry
				var err error
				switch in.Kind {
				case Regular:
					n.Size = uint64(in.Size)
					if in.Object != nil {
						// The tree's ids are never modified: no copy.
						e, err = b.AddExternal(parent, &n, in.Object)
						break
					}
					n.Size = uint64(len(in.Inline))
					n.Content = in.Inline
					e, err = b.Add(parent, &n)
				case Symlink:
					n.Payload = in.Target
					n.Size = uint64(len(in.Target))
					e, err = b.Add(parent, &n)
				case CharDev, BlockDev:
					n.Rdev = in.Rdev
					e, err = b.Add(parent, &n)
				default:
					e, err = b.Add(parent, &n)
				}
				if err != nil {
					return err
				}
				if in.maybeShared() {
					first[in] = e
				}
			}
		}
		return nil
	}
	if err := walk(root, rootEntry); err != nil {
		return err
	}
	first = nil
	return b.Write(w)
}

// appendXattrs appends x's pairs to xs sorted by name, as erofsXattrs
// makes them.
func appendXattrs(xs []erofs.Xattr, x map[string][]byte) []erofs.Xattr {
	for name, value := range x {
		xs = append(xs, erofs.Xattr{Name: name, Value: value})
	}
	if len(xs) > 1 {
		slices.SortFunc(xs, func(a, b erofs.Xattr) int { return strings.Compare(a.Name, b.Name) })
	}
	return xs
}

func leafNode(name string, in *Leaf) *erofs.Node {
	n := &erofs.Node{Name: name, Mode: kindMode[in.Kind] | in.Mode&0o7777}
	erofsStat(n, &in.Stat)
	switch in.Kind {
	case Regular:
		if in.Object != nil {
			// The tree's ids are never modified: no copy.
			n.SetExternalShared(in.Object, uint64(in.Size))
		} else {
			n.Size = uint64(len(in.Inline))
			n.Content = in.Inline
		}
	case Symlink:
		n.Payload = in.Target
		n.Size = uint64(len(in.Target))
	case CharDev, BlockDev:
		n.Rdev = in.Rdev
	}
	return n
}

func childPath(parent *erofs.Node, name string) string {
	p := parent.Path()
	if p == "/" {
		return "/" + name
	}
	return p + "/" + name
}

var kindType = map[Kind]stream.Type{
	Regular:  stream.TypeFile,
	Symlink:  stream.TypeSymlink,
	CharDev:  stream.TypeCharDev,
	BlockDev: stream.TypeBlockDev,
	Fifo:     stream.TypeFifo,
	Socket:   stream.TypeSocket,
}

func streamEntry(t stream.Type, p string, st *Stat) *stream.Entry {
	return &stream.Entry{Type: t, Path: p, Mode: st.Mode & 0o7777, UID: st.UID, GID: st.GID,
		Mtime: st.Mtime, MtimeNsec: st.MtimeNsec, Xattrs: st.Xattrs}
}

// WriteEntries writes the tree as object-list entries, root first. src
// gives the path holding a regular file's bytes (the object in the
// store), and may return "" when there is none to name.
//
// Only regular files are listed as hardlinks. A layer may hardlink a
// symlink, a device or a FIFO too; the EROFS image keeps such names on one
// inode, as composefs-rs and mkcomposefs do, but the list spells each name
// out as an entry of its own: an ostree commit has no hardlinks (two
// symlinks with the same metadata and target are one object there
// anyway), and a consumer then needs no second kind of link target.
func WriteEntries(w stream.EntryWriter, root *Dir, src func(*Leaf) string) error {
	if err := w.WriteEntry(streamEntry(stream.TypeDir, "/", &root.Stat)); err != nil {
		return err
	}
	return root.Walk(func(p string, in Inode, firstPath string) error {
		switch in := in.(type) {
		case *Dir:
			return w.WriteEntry(streamEntry(stream.TypeDir, p, &in.Stat))
		case *Leaf:
			if firstPath != "" && in.Kind == Regular {
				return w.WriteEntry(&stream.Entry{Type: stream.TypeHardlink, Path: p, LinkTo: firstPath})
			}
			e := streamEntry(kindType[in.Kind], p, &in.Stat)
			switch in.Kind {
			case Regular:
				e.Size = in.Size
				if len(in.Inline) > 0 {
					e.Inline = in.Inline
				}
				if in.Object != nil {
					e.Composefs = hex.EncodeToString(in.Object)
					e.Src = src(in)
				}
			case Symlink:
				e.Target = in.Target
			case CharDev, BlockDev:
				e.Rdev = in.Rdev
			}
			return w.WriteEntry(e)
		}
		return nil
	})
}
