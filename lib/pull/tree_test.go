package pull

import (
	"bytes"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/oci"
)

// TestTreeFromLogs: the tree a pull merges from the logs of the layers it
// imported (and the streams of those it found stored) makes the EROFS
// image, with the implied directories, that merging the stored streams
// makes.
func TestTreeFromLogs(t *testing.T) {
	var fromLogs []bool
	buildTree = func(repo *composefs.Repository, diffIDs []string, logs []*oci.MemberLog) (*fstree.Dir, *oci.Merger, error) {
		fromLogs = fromLogs[:0]
		for _, l := range logs {
			fromLogs = append(fromLogs, l != nil && l.Members() > 0)
		}
		return oci.BuildCheckedTreeFrom(repo, diffIDs, logs)
	}
	t.Cleanup(func() { buildTree = oci.BuildCheckedTreeFrom })
	repo := newRepo(t)
	for _, c := range []struct {
		version string
		want    []bool // layers taken from logs
	}{
		{"1.0", []bool{true, true, true}},
		// Layers 0 and 1 are shared with 1.0, so stored: read back.
		{"2.0", []bool{false, false, true}},
	} {
		_, res := pullImage(t, repo, testimage.Options{Seed: 7, Version: c.version})
		if len(fromLogs) != len(c.want) {
			t.Fatalf("%s: logs for %d layers, want %d", c.version, len(fromLogs), len(c.want))
		}
		for i := range c.want {
			if fromLogs[i] != c.want[i] {
				t.Fatalf("%s: layers from logs %v, want %v", c.version, fromLogs, c.want)
			}
		}
		tree, mg, err := oci.BuildTree(repo, res.DiffIDs)
		if err != nil {
			t.Fatal(err)
		}
		id, err := oci.WriteErofs(repo, tree)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(id, res.ImageID) || mg.ImpliedDirs != res.Implied {
			t.Fatalf("%s: image %x with %d implied directories, from the streams %x with %d", c.version, res.ImageID, res.Implied, id, mg.ImpliedDirs)
		}
	}
}
