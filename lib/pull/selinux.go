package pull

import (
	"fmt"
	"io"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/selabel"
)

// LabelSELinux labels tree with the SELinux policy the image ships, as
// bootc does before it synthesizes an ostree commit, reading the policy
// files from the tree and repo. It returns the policy (nil when the image
// names none, and then the tree is left unlabelled) and how many hardlinks
// were split because their names got different labels. The composefs image
// in the repository is not affected: an OCI image is never labelled.
func LabelSELinux(repo *composefs.Repository, tree *fstree.Dir) (*selabel.Policy, int, error) {
	open := fstree.Opener(tree, func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) })
	policy, err := selabel.Load(open)
	if err != nil {
		return nil, 0, fmt.Errorf("SELinux policy of the image: %w", err)
	}
	if policy == nil {
		return nil, 0, nil
	}
	return policy, fstree.Relabel(tree, policy), nil
}
