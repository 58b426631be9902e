package fstree

import "maps"

// Clone returns a deep copy of the tree under d: new directories, leaves
// and xattr maps, with every hardlinked leaf still one leaf shared by the
// same names. A transform of the copy (the boot image's relabelling, which
// sets xattrs on leaves) leaves the original as it was.
func (d *Dir) Clone() *Dir {
	leaves := make(map[*Leaf]*Leaf)
	var clone func(src *Dir) *Dir
	clone = func(src *Dir) *Dir {
		dst := &Dir{Stat: cloneStat(src.Stat), entries: make(map[string]Inode, len(src.entries))}
		for name, in := range src.entries {
			switch in := in.(type) {
			case *Dir:
				dst.entries[name] = clone(in)
			case *Leaf:
				c, ok := leaves[in]
				if !ok {
					copied := *in
					copied.Stat = cloneStat(in.Stat)
					c = &copied
					leaves[in] = c
				}
				dst.entries[name] = c
			}
		}
		return dst
	}
	return clone(d)
}

func cloneStat(st Stat) Stat {
	if st.Xattrs != nil {
		st.Xattrs = maps.Clone(st.Xattrs)
	}
	return st
}
