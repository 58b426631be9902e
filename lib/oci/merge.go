package oci

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cfs-project/cfs/lib/fstree"
)

// Merger applies layer members in order onto one tree, as composefs-rs's
// process_entry does: ".wh.<name>" removes name, ".wh..wh..opq" empties
// the directory, a directory over a directory keeps the children,
// anything else replaces, and a hardlink shares the leaf it names in the
// tree as merged so far (possibly from an earlier layer).
type Merger struct {
	Root *fstree.Dir
	// ImpliedDirs counts parents that a layer used without listing them;
	// they are created as 0755 root:root directories, as
	// containers-storage does. composefs-rs refuses such layers.
	ImpliedDirs int

	// The directory the last member went into, and its path: a layer
	// lists a directory's entries together, so the next member's parent
	// is usually the same, found without a walk from the root. It stays
	// in the tree at that path: a member changes only the entries of the
	// directory it goes into, never that directory or one above it.
	lastParent string
	lastDir    *fstree.Dir
	// The metadata of every inode a member with xattrs made or changed:
	// the only ones transformForOCI has to filter (a walk of the whole
	// tree for the few that have xattrs took a quarter of a merge).
	withXattrs []*fstree.Stat
}

// NewMerger starts an empty tree whose root metadata is set by the first
// member naming "/" or, for OCI images, copied from /usr at the end.
func NewMerger() *Merger {
	return &Merger{Root: fstree.NewDir(fstree.Stat{Mode: 0o755})}
}

// Apply adds one member.
func (mg *Merger) Apply(m *Member) error {
	if m.Path == "/" {
		mg.Root.Stat = m.Stat
		if m.Stat.Xattrs != nil {
			mg.withXattrs = append(mg.withXattrs, &mg.Root.Stat)
		}
		return nil
	}
	dir, name, err := mg.parent(m.Path)
	if err != nil {
		return err
	}
	if w, ok := strings.CutPrefix(name, ".wh."); ok {
		if w == ".wh..opq" {
			dir.Clear()
		} else {
			dir.Remove(w)
		}
		return nil
	}
	var in fstree.Inode
	switch {
	case m.Dir:
		in = fstree.NewDir(m.Stat)
	case m.Hardlink != "":
		target, err := mg.Root.Lookup(m.Hardlink)
		if err != nil {
			return fmt.Errorf("%s: hardlink target: %w", m.Path, err)
		}
		leaf, ok := target.(*fstree.Leaf)
		if !ok {
			return fmt.Errorf("%s: hardlink target %s is a directory", m.Path, m.Hardlink)
		}
		in = leaf
	default:
		in = &fstree.Leaf{Stat: m.Stat, Kind: m.Kind, Size: m.Size, Inline: m.Inline, Object: m.Object, Target: m.Target, Rdev: m.Rdev}
	}
	if m.Stat.Xattrs != nil {
		// The metadata that will be in the tree: a directory over a
		// directory goes into the one there.
		switch in := in.(type) {
		case *fstree.Dir:
			if old, ok := dir.Get(name).(*fstree.Dir); ok {
				mg.withXattrs = append(mg.withXattrs, &old.Stat)
			} else {
				mg.withXattrs = append(mg.withXattrs, &in.Stat)
			}
		case *fstree.Leaf:
			if m.Hardlink == "" { // a hardlink's own metadata is not used
				mg.withXattrs = append(mg.withXattrs, &in.Stat)
			}
		}
	}
	// A copy of the name: the member's whole path is not to stay alive
	// in the tree for each entry.
	dir.Merge(strings.Clone(name), in)
	return nil
}

// parent finds the directory that will hold p, creating implied parents.
// A parent path that runs through a non-directory is an error.
func (mg *Merger) parent(p string) (*fstree.Dir, string, error) {
	t := strings.Trim(p, "/")
	i := strings.LastIndexByte(t, '/')
	parentPath, name := "", t
	if i >= 0 {
		parentPath, name = t[:i], t[i+1:]
	}
	if mg.lastDir != nil && parentPath == mg.lastParent {
		return mg.lastDir, name, nil
	}
	cur := mg.Root
	for rest := parentPath; rest != ""; {
		c, after, _ := strings.Cut(rest, "/")
		switch next := cur.Get(c).(type) {
		case *fstree.Dir:
			cur = next
		case nil:
			d := fstree.NewDir(fstree.Stat{Mode: 0o755})
			cur.Set(strings.Clone(c), d)
			mg.ImpliedDirs++
			cur = d
		case *fstree.Leaf:
			return nil, "", fmt.Errorf("%s: parent /%s is a %s, not a directory (a member may not go through a symlink)", p, t[:len(parentPath)-len(rest)+len(c)], next.Kind)
		}
		rest = after
	}
	mg.lastParent, mg.lastDir = parentPath, cur
	return cur, name, nil
}

// XattrPolicy says which xattrs survive TransformForOCI.
type XattrPolicy int

const (
	// AllowlistOnly keeps security.capability alone: composefs-rs's
	// default, so tar SELinux labels never reach the image.
	AllowlistOnly XattrPolicy = iota
	// KeepUserXattrs also keeps user.*.
	KeepUserXattrs
)

// keeps reports whether the xattr name survives TransformForOCI.
func (policy XattrPolicy) keeps(name string) bool {
	return name == "security.capability" || policy == KeepUserXattrs && strings.HasPrefix(name, "user.")
}

// TransformForOCI makes the tree what composefs-rs mounts for an OCI
// image: the root takes /usr's metadata (container runtimes ignore a
// layer's root entry, so it cannot be trusted), /run is emptied with
// /usr's mtime, and xattrs are filtered by policy.
func TransformForOCI(root *fstree.Dir, policy XattrPolicy) error {
	return transformForOCI(root, policy, func(filter func(*fstree.Stat)) error {
		filtered := make(map[*fstree.Leaf]bool)
		return root.Walk(func(_ string, in fstree.Inode, _ string) error {
			switch in := in.(type) {
			case *fstree.Dir:
				filter(&in.Stat)
			case *fstree.Leaf:
				if !filtered[in] {
					filtered[in] = true
					filter(&in.Stat)
				}
			}
			return nil
		})
	})
}

// transformForOCI is TransformForOCI for the tree the merger built: only
// the inodes members gave xattrs to have any to filter.
func (mg *Merger) transformForOCI(policy XattrPolicy) error {
	return transformForOCI(mg.Root, policy, func(filter func(*fstree.Stat)) error {
		for _, st := range mg.withXattrs {
			filter(st)
		}
		return nil
	})
}

// transformForOCI is TransformForOCI with the inodes below the root
// filtered by each.
func transformForOCI(root *fstree.Dir, policy XattrPolicy, each func(filter func(*fstree.Stat)) error) error {
	usr, ok := root.Get("usr").(*fstree.Dir)
	if !ok {
		return errors.New("image has no /usr directory (composefs-rs requires one for an OCI image)")
	}
	root.Stat = fstree.Stat{Mode: usr.Mode, UID: usr.UID, GID: usr.GID, Mtime: usr.Mtime, MtimeNsec: usr.MtimeNsec, Xattrs: cloneXattrs(usr.Xattrs)}
	if run, ok := root.Get("run").(*fstree.Dir); ok {
		run.Clear()
		run.Mtime, run.MtimeNsec = usr.Mtime, usr.MtimeNsec
	}
	filter := func(st *fstree.Stat) {
		for name := range st.Xattrs {
			if !policy.keeps(name) {
				delete(st.Xattrs, name)
			}
		}
		if len(st.Xattrs) == 0 {
			st.Xattrs = nil
		}
	}
	filter(&root.Stat)
	return each(filter)
}

func cloneXattrs(x map[string][]byte) map[string][]byte {
	if x == nil {
		return nil
	}
	out := make(map[string][]byte, len(x))
	for k, v := range x {
		out[k] = v
	}
	return out
}
