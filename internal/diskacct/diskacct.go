// Package diskacct accounts for the disk a benchmark run left on a
// filesystem: how much of the blocks it took are inodes, directories,
// file data it wrote and file data it shares with another store (which
// costs nothing), so that a figure like "3% extra disk" can be split into
// what the layout needs and what could be avoided (speculative
// preallocation, copies where clones were meant).
package diskacct

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"

	"github.com/cfs-project/cfs/lib/reflink"
)

// Usage is what a tree holds on disk, by kind.
type Usage struct {
	Inodes   int64 // every entry: files, directories, symlinks, devices
	DirBytes int64 // blocks of directories
	// Regular files' mapped extents, split by whether XFS marks them shared
	// (a clone of, or cloned by, another file: no blocks of their own) and,
	// for unshared ones, by the caller's class: bodies (the image's files)
	// or metadata (streams, the EROFS image, tar-split, JSON).
	SharedBytes, BodyBytes, MetaBytes int64
	BodyFiles, MetaFiles              int64 // files with unshared blocks, by class
	// PastExtents is what st_blocks counts beyond the mapped extents:
	// preallocation past the end of file, and the blocks of symlinks and
	// other entries.
	PastExtents int64
}

// Walk accounts for the tree under root; isBody says whether a regular
// file (its path relative to root) is one of the image's files rather
// than the store's own metadata.
func Walk(root string, isBody func(rel string) bool) (Usage, error) {
	var u Usage
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		u.Inodes++
		allocated := fi.Sys().(*syscall.Stat_t).Blocks * 512
		switch {
		case d.IsDir():
			u.DirBytes += allocated
			return nil
		case !d.Type().IsRegular():
			u.PastExtents += allocated
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		extents, err := reflink.Extents(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		var mapped, unshared int64
		for _, e := range extents {
			mapped += int64(e.Length)
			if e.Shared() {
				u.SharedBytes += int64(e.Length)
			} else {
				unshared += int64(e.Length)
			}
		}
		if allocated > mapped {
			u.PastExtents += allocated - mapped
		}
		if unshared > 0 {
			rel, _ := filepath.Rel(root, p)
			if isBody(rel) {
				u.BodyBytes += unshared
				u.BodyFiles++
			} else {
				u.MetaBytes += unshared
				u.MetaFiles++
			}
		}
		return nil
	})
	return u, err
}

// Add sums two accounts (a run that left two trees).
func (u Usage) Add(v Usage) Usage {
	return Usage{
		Inodes: u.Inodes + v.Inodes, DirBytes: u.DirBytes + v.DirBytes,
		SharedBytes: u.SharedBytes + v.SharedBytes, BodyBytes: u.BodyBytes + v.BodyBytes, MetaBytes: u.MetaBytes + v.MetaBytes,
		BodyFiles: u.BodyFiles + v.BodyFiles, MetaFiles: u.MetaFiles + v.MetaFiles, PastExtents: u.PastExtents + v.PastExtents,
	}
}

var isizeRE = regexp.MustCompile(`isize=(\d+)`)

// InodeSize is the on-disk inode size of the XFS holding dir (xfs_info).
func InodeSize(dir string) (int64, error) {
	out, err := exec.Command("xfs_info", dir).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("xfs_info %s: %v: %s", dir, err, out)
	}
	m := isizeRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("xfs_info %s: no isize in %q", dir, out)
	}
	return strconv.ParseInt(string(m[1]), 10, 64)
}

// Report splits extra, the filesystem's used bytes a run added, into
// what u accounts for, as percentages of size (the image's file content):
// inodes at isize bytes each, directories, metadata files and bodies
// written, and the rest (XFS's own btrees and whatever u does not see:
// it should be near zero). Beyond is extra minus the bodies written: the
// figure to compare between a run that shares the bodies and one that
// writes them.
func Report(extra, size, isize int64, u Usage) string {
	pct := func(n int64) string {
		return fmt.Sprintf("%.1f MiB = %.2f%%", float64(n)/(1<<20), 100*float64(n)/float64(size))
	}
	inodes := u.Inodes * isize
	rest := extra - inodes - u.DirBytes - u.MetaBytes - u.BodyBytes - u.PastExtents
	return fmt.Sprintf("extra %s: inodes %s (%d × %d B), directories %s, metadata files %s (%d), bodies written %s (%d), past extents %s, rest %s; beyond the bodies %s",
		pct(extra), pct(inodes), u.Inodes, isize, pct(u.DirBytes), pct(u.MetaBytes), u.MetaFiles, pct(u.BodyBytes), u.BodyFiles, pct(u.PastExtents), pct(rest), pct(extra-u.BodyBytes))
}
