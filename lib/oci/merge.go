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
	// A copy of the name: the member's whole path is not to stay alive
	// in the tree for each entry.
	dir.Merge(strings.Clone(name), in)
	return nil
}

// parent finds the directory that will hold p, creating implied parents.
// A parent path that runs through a non-directory is an error.
func (mg *Merger) parent(p string) (*fstree.Dir, string, error) {
	cur := mg.Root
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i, c := range parts[:len(parts)-1] {
		switch next := cur.Get(c).(type) {
		case *fstree.Dir:
			cur = next
		case nil:
			d := fstree.NewDir(fstree.Stat{Mode: 0o755})
			cur.Set(strings.Clone(c), d)
			mg.ImpliedDirs++
			cur = d
		case *fstree.Leaf:
			return nil, "", fmt.Errorf("%s: parent /%s is a %s, not a directory (a member may not go through a symlink)", p, strings.Join(parts[:i+1], "/"), next.Kind)
		}
	}
	return cur, parts[len(parts)-1], nil
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
