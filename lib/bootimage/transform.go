package bootimage

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/selabel"
)

// RefBootImageV1 is the named ref of an image's config stream that names
// its V1 boot image, as composefs-rs and bootc write it (the V2 image
// would be "composefs.image.boot"; we write V1 only, like the plain
// image's "composefs.image.v1"). It keeps the boot image alive through
// GC; oci.OpenImage returns it as StoredImage.BootImageID.
const RefBootImageV1 = oci.RefBootImageV1

// ErrNoBootDirs is wrapped by TransformForBoot when the image lacks /boot
// or /sysroot, which composefs-rs requires of every image it boots.
var ErrNoBootDirs = errors.New("a bootable image needs /boot and /sysroot directories")

// Transformed reports what TransformForBoot did.
type Transformed struct {
	// Policy is the SELinux policy type the tree was labelled from, ""
	// when the image names none (then every label was removed).
	Policy string
	// Split counts hardlinked names that got labels of their own.
	Split int
}

// TransformForBoot turns the merged image tree (after the OCI transform
// lib/oci applies) in place into the tree of its boot image, as
// composefs-rs's transform_for_boot does:
//   - /boot and /sysroot must be directories; they are emptied and take
//     /usr's mtime seconds (their nanoseconds stay: composefs-rs copies
//     only st_mtim_sec). /boot holds the UKI that may seal this very
//     image, and /sysroot ostree's content, neither of which belongs in
//     the booted root.
//   - With /etc/selinux/config naming a policy, every inode gets the
//     security.selinux that policy gives its path (none for <<none>>),
//     and hardlinked names that get different labels stop sharing their
//     inode. Without one, every security.selinux is removed.
//
// open reads the policy files of the tree.
func TransformForBoot(root *fstree.Dir, open ObjectOpener) (*Transformed, error) {
	usr, ok := root.Get("usr").(*fstree.Dir)
	if !ok {
		return nil, fmt.Errorf("%w: the image has no /usr directory", ErrNoBootDirs)
	}
	var dirs []*fstree.Dir
	for _, name := range []string{"boot", "sysroot"} {
		d, ok := root.Get(name).(*fstree.Dir)
		if !ok {
			return nil, fmt.Errorf("%w: /%s is missing or not a directory", ErrNoBootDirs, name)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		d.Clear()
		d.Mtime = usr.Mtime
	}
	policy, err := selabel.Load(fstree.Opener(root, open))
	if err != nil {
		return nil, fmt.Errorf("SELinux policy of the image: %w", err)
	}
	if policy == nil {
		stripLabels(root)
		return &Transformed{}, nil
	}
	return &Transformed{Policy: policy.Type, Split: fstree.Relabel(root, policy)}, nil
}

// stripLabels removes security.selinux from every inode.
func stripLabels(root *fstree.Dir) {
	strip := func(st *fstree.Stat) {
		if _, ok := st.Xattrs[selabel.Xattr]; !ok {
			return
		}
		x := make(map[string][]byte, len(st.Xattrs))
		for k, v := range st.Xattrs {
			if k != selabel.Xattr {
				x[k] = v
			}
		}
		if len(x) == 0 {
			x = nil
		}
		st.Xattrs = x
	}
	strip(&root.Stat)
	_ = root.Walk(func(_ string, in fstree.Inode, _ string) error {
		switch in := in.(type) {
		case *fstree.Dir:
			strip(&in.Stat)
		case *fstree.Leaf:
			strip(&in.Stat)
		}
		return nil
	})
}

// Tree returns the boot-transformed copy of the tree, which is left as
// it was.
func Tree(tree *fstree.Dir, open ObjectOpener) (*fstree.Dir, *Transformed, error) {
	boot := tree.Clone()
	tr, err := TransformForBoot(boot, open)
	if err != nil {
		return nil, nil, err
	}
	return boot, tr, nil
}

// Build returns the V1 EROFS of the boot image of the tree, which is left
// as it was.
func Build(tree *fstree.Dir, open ObjectOpener) ([]byte, *Transformed, error) {
	boot, tr, err := Tree(tree, open)
	if err != nil {
		return nil, nil, err
	}
	node, err := fstree.ToErofs(boot)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if err := erofs.Write(&buf, node, erofs.V1); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), tr, nil
}

// ID is the fs-verity digest of a boot image, its name in a repository
// of algorithm alg and the id on the kernel command line.
func ID(image []byte, alg fsverity.Algorithm) ([]byte, error) {
	return fsverity.Digest(bytes.NewReader(image), alg)
}

// Write builds the boot image of the tree (left as it was) and stores it
// in repo under images/, returning its id. Nothing names it yet: the
// caller links it from the config stream (RefBootImageV1), or it is
// garbage.
func Write(repo *composefs.Repository, tree *fstree.Dir) ([]byte, *Transformed, error) {
	open := func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) }
	boot, tr, err := Tree(tree, open)
	if err != nil {
		return nil, nil, err
	}
	// Streamed to the repository as the plain image is, not built in
	// memory first.
	id, err := oci.WriteErofs(repo, boot)
	if err != nil {
		return nil, nil, err
	}
	return id, tr, nil
}
