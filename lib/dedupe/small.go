package dedupe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cfs-project/cfs/lib/ostree"
)

// SmallStats counts what SmallFiles did with the files it found.
type SmallStats struct {
	Files   int `json:"files"`   // regular files of 1 to InlineMax bytes under the trees
	Deduped int `json:"deduped"` // now sharing the block of the object with their bytes
	Shared  int `json:"shared"`  // the very block of that object already: left alone
	Missing int `json:"missing"` // no file object of the commit has their bytes
}

func (s SmallStats) String() string {
	return fmt.Sprintf("%d files of 1 to %d bytes: %d deduplicated, %d already shared, %d with no object of the same bytes",
		s.Files, InlineMax, s.Deduped, s.Shared, s.Missing)
}

// SmallFiles makes each regular file of 1 to InlineMax bytes under the
// given trees share the block of the file object of commit that has the
// same bytes. Such files have no composefs object (composefs keeps them
// inline in its EROFS images), so Commit leaves them alone, yet each
// store holding them as files (ostree's objects, containers-storage's
// layer directories) spends a whole block on each. The kernel compares
// the bytes before it shares anything, as for Commit. A directory on
// another filesystem (a mount below a tree) is not entered. The ostree
// repository's shared lock is held throughout.
func SmallFiles(ctx context.Context, repo *ostree.Repo, commit string, trees []string) (SmallStats, error) {
	var st SmallStats
	if err := repo.LockShared(); err != nil {
		return st, err
	}
	c, err := repo.ReadCommit(commit)
	if err != nil {
		return st, fmt.Errorf("commit %s: %w", commit, err)
	}
	// The commit's small objects by their bytes: at most InlineMax bytes
	// each, read whole.
	objects := map[string]string{}
	err = eachObject(ctx, repo, commit, c.RootTree, func(path, checksum string) error {
		p := filepath.Join(repo.Path(), ostree.ObjectPath(checksum, ostree.ObjectFile))
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("commit %s: %s: %w", commit, path, err)
		}
		if !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size() > InlineMax {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("commit %s: %s: %w", commit, path, err)
		}
		if _, ok := objects[string(data)]; !ok {
			objects[string(data)] = p
		}
		return nil
	})
	if err != nil || len(objects) == 0 {
		return st, err
	}
	for _, tree := range trees {
		root, err := os.Stat(tree)
		if err != nil {
			return st, err
		}
		dev := root.Sys().(*syscall.Stat_t).Dev
		err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.IsDir() {
				if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Dev != dev {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Size() == 0 || fi.Size() > InlineMax {
				return nil
			}
			st.Files++
			return smallFile(p, objects, &st)
		})
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// smallFile shares the block of file p with the object of its bytes.
func smallFile(p string, objects map[string]string, st *SmallStats) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, InlineMax+1)
	n, err := f.ReadAt(buf, 0)
	if err != nil && n == 0 {
		return fmt.Errorf("%s: %w", p, err)
	}
	obj, ok := objects[string(buf[:n])]
	if !ok {
		st.Missing++
		return nil
	}
	src, err := os.Open(obj)
	if err != nil {
		return err
	}
	defer src.Close()
	if sameExtents(f, src) {
		st.Shared++
		return nil
	}
	if _, err := File(f, src); err != nil {
		if errors.Is(err, ErrDiffers) {
			// Changed between the read and the dedupe: not ours to judge.
			st.Missing++
			return nil
		}
		return err
	}
	st.Deduped++
	return nil
}
