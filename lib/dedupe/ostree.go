package dedupe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
)

// InlineMax is the composefs rule: files of this size or less are stored
// inline in the EROFS image, not as objects, so there is nothing to share.
const InlineMax = 64

// Stats counts what Commit did with the commit's file objects.
type Stats struct {
	Objects      int   // distinct regular file objects in the commit
	Deduped      int   // now sharing the extents of their composefs object
	DedupedBytes int64 // bytes the kernel reported deduplicated
	Shared       int   // the very extents of its composefs object already: left alone
	SharedBytes  int64
	Small        int // InlineMax bytes or less: no composefs object exists
	Missing      int // no composefs object has these bytes
	MissingBytes int64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d file objects: %d deduplicated (%d bytes), %d already shared (%d bytes), %d of %d bytes or less, %d with no composefs object (%d bytes)",
		s.Objects, s.Deduped, s.DedupedBytes, s.Shared, s.SharedBytes, s.Small, InlineMax, s.Missing, s.MissingBytes)
}

// Commit makes each regular file object of commit that is larger than
// InlineMax share its extents with the composefs object of the same
// bytes. The composefs object is found by the file's fs-verity digest
// (computed in userspace) and the kernel compares the bytes before it
// shares anything, so neither store's content can change. An object that
// has the very extents of its composefs object already (a commit cfs
// synthesized, or a re-run after an interruption) is left alone. Extents
// merely marked shared prove nothing: ostree reflinks /usr/etc into each
// deployment's /etc, for one. The ostree
// repository's shared lock is held throughout, so a concurrent prune
// cannot remove an object being deduplicated.
func Commit(ctx context.Context, repo *ostree.Repo, cfs *composefs.Repository, commit string) (Stats, error) {
	var st Stats
	if err := repo.LockShared(); err != nil {
		return st, err
	}
	c, err := repo.ReadCommit(commit)
	if err != nil {
		return st, fmt.Errorf("commit %s: %w", commit, err)
	}
	return st, eachObject(ctx, repo, commit, c.RootTree, func(path, checksum string) error {
		if err := object(repo, cfs, checksum, &st); err != nil {
			return fmt.Errorf("commit %s: %s: %w", commit, path, err)
		}
		return nil
	})
}

// eachObject calls fn once for each distinct file object of the tree
// rootTree of commit, with the first path that names it.
func eachObject(ctx context.Context, repo *ostree.Repo, commit, rootTree string, fn func(path, checksum string) error) error {
	seen := map[string]bool{}
	var walk func(tree, path string) error
	walk = func(tree, path string) error {
		t, err := repo.ReadDirTree(tree)
		if err != nil {
			return fmt.Errorf("commit %s: %s: %w", commit, path, err)
		}
		for _, f := range t.Files {
			if err := ctx.Err(); err != nil {
				return err
			}
			if seen[f.Checksum] {
				continue
			}
			seen[f.Checksum] = true
			if err := fn(path+"/"+f.Name, f.Checksum); err != nil {
				return err
			}
		}
		for _, d := range t.Dirs {
			if err := walk(d.TreeChecksum, path+"/"+d.Name); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(rootTree, "")
}

// object deduplicates one file object against composefs.
func object(repo *ostree.Repo, cfs *composefs.Repository, checksum string, st *Stats) error {
	p := filepath.Join(repo.Path(), ostree.ObjectPath(checksum, ostree.ObjectFile))
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil // a symlink object: no bytes to share
	}
	st.Objects++
	if fi.Size() <= InlineMax {
		st.Small++
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	id, err := fsverity.Digest(f, cfs.Algorithm())
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if !cfs.HasObject(id) {
		st.Missing++
		st.MissingBytes += fi.Size()
		return nil
	}
	src, err := cfs.OpenObject(id)
	if err != nil {
		return err
	}
	defer src.Close()
	if sameExtents(f, src) {
		st.Shared++
		st.SharedBytes += fi.Size()
		return nil
	}
	n, err := File(f, src)
	if errors.Is(err, ErrDiffers) {
		// Same fs-verity digest, different bytes: one store is corrupt.
		return fmt.Errorf("%w; the composefs object %x has the digest of ostree object %s (run cfs-fsck objects)", err, id, checksum)
	}
	if err != nil {
		return err
	}
	st.Deduped++
	st.DedupedBytes += n
	return nil
}

// sameExtents reports whether two files map the same disk blocks at the
// same offsets: they share all their bytes already.
func sameExtents(a, b *os.File) bool {
	ea, err := reflink.Extents(a)
	if err != nil || len(ea) == 0 {
		return false
	}
	eb, err := reflink.Extents(b)
	if err != nil || len(ea) != len(eb) {
		return false
	}
	for i := range ea {
		if ea[i].Logical != eb[i].Logical || ea[i].Physical != eb[i].Physical || ea[i].Length != eb[i].Length {
			return false
		}
	}
	return true
}
