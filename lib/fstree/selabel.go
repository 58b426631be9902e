package fstree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"

	"github.com/cfs-project/cfs/lib/selabel"
)

var selabelType = map[Kind]byte{
	Regular:  selabel.TypeRegular,
	Symlink:  selabel.TypeSymlink,
	CharDev:  selabel.TypeCharDev,
	BlockDev: selabel.TypeBlockDev,
	Fifo:     selabel.TypeFifo,
	Socket:   selabel.TypeSocket,
}

// Relabel sets security.selinux on every inode of the tree from p, or
// removes it where p gives no label, as composefs-rs's selabel does before
// bootc synthesizes an ostree commit. Names of one hardlinked leaf that get
// different labels no longer share it: each label gets its own copy of the
// leaf (composefs-rs PR #296; ostree breaks such links too). It returns how
// many copies were made.
func Relabel(root *Dir, p *selabel.Policy) (split int) {
	setLabel(&root.Stat, p, "/", selabel.TypeDir)
	// Each leaf as first found, relabelled in place, and the copies made
	// for names of it that got other labels.
	seen := make(map[*Leaf]bool)
	copies := make(map[*Leaf][]*Leaf)
	var walk func(dir *Dir, prefix string)
	walk = func(dir *Dir, prefix string) {
		for _, name := range dir.Names() {
			path := prefix + "/" + name
			if alias := p.Alias(path); alias != "" {
				path = alias
			}
			switch in := dir.entries[name].(type) {
			case *Dir:
				setLabel(&in.Stat, p, path, selabel.TypeDir)
				walk(in, path)
			case *Leaf:
				label, ok := p.Lookup(path, selabelType[in.Kind])
				if !seen[in] {
					seen[in] = true
					in.Xattrs = withLabel(in.Xattrs, label, ok)
					continue
				}
				if l := withSameLabel(append([]*Leaf{in}, copies[in]...), label, ok); l != nil {
					placed(l)
					dir.entries[name] = l
					continue
				}
				clone := *in
				clone.names = 1
				clone.Xattrs = withLabel(in.Xattrs, label, ok)
				copies[in] = append(copies[in], &clone)
				dir.entries[name] = &clone
				split++
			}
		}
	}
	walk(root, "")
	return split
}

// withSameLabel returns the leaf of leaves that carries label (none when
// ok is false), or nil.
func withSameLabel(leaves []*Leaf, label string, ok bool) *Leaf {
	for _, l := range leaves {
		if v, has := l.Xattrs[selabel.Xattr]; has == ok && string(v) == label {
			return l
		}
	}
	return nil
}

func setLabel(st *Stat, p *selabel.Policy, path string, typ byte) {
	label, ok := p.Lookup(path, typ)
	st.Xattrs = withLabel(st.Xattrs, label, ok)
}

// withLabel returns a new map, so that leaves that shared one before (a
// leaf and its copies) do not share a label.
func withLabel(x map[string][]byte, label string, ok bool) map[string][]byte {
	if !ok {
		if _, had := x[selabel.Xattr]; !had {
			return x
		}
		x = maps.Clone(x)
		delete(x, selabel.Xattr)
		return x
	}
	out := make(map[string][]byte, len(x)+1)
	maps.Copy(out, x)
	out[selabel.Xattr] = []byte(label)
	return out
}

// Opener returns a selabel.OpenFunc reading regular files of the tree:
// inline bytes directly, external ones through object.
func Opener(root *Dir, object func(id []byte) (io.ReadCloser, error)) selabel.OpenFunc {
	return func(p string) (io.ReadCloser, error) {
		in, err := root.Lookup(p)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		if err != nil {
			return nil, err
		}
		leaf, ok := in.(*Leaf)
		if !ok || leaf.Kind != Regular {
			return nil, errors.New("not a regular file")
		}
		if leaf.Object == nil {
			return io.NopCloser(bytes.NewReader(leaf.Inline)), nil
		}
		return object(leaf.Object)
	}
}
