package scripts

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/reflink"
)

// diskUse is where a sysroot's blocks are, by store: each physical block
// counted once, for the first store (in storeOrder) that maps it, and the
// blocks mapped past a file's last block (XFS's speculative
// preallocation) apart.
type diskUse struct {
	blockSize int64
	stores    map[string]*storeUse
	used      int64 // statfs
	inodes    int64 // statfs: in use
	isize     int64 // bytes an inode takes on disk (xfs_info)
}

type storeUse struct {
	files       int
	apparent    int64 // sizes
	allocated   int64 // st_blocks
	own         int64 // blocks no store before it in storeOrder maps
	pastEOF     int64 // blocks mapped past the last block of a file
	smallBlocks int64 // own blocks of files of 64 bytes or less
	dirs        int
	dirBlocks   int64 // directories' blocks (never shared)
}

// storeOrder: the copy a classic host had first, then what full adds.
var storeOrder = []string{
	"ostree file objects", "ostree metadata", "ostree deployments", "boot",
	"composefs file objects", "composefs images", "composefs streams", "composefs other",
	"containers-storage layer files", "containers-storage metadata", "other",
}

// storeOf names the store a path (relative to the sysroot) belongs to.
func storeOf(rel string, cfsNamed map[string]string) string {
	switch {
	case strings.HasPrefix(rel, "ostree/repo/objects/") && strings.HasSuffix(rel, ".file"):
		return "ostree file objects"
	case strings.HasPrefix(rel, "ostree/repo/"):
		return "ostree metadata"
	case strings.HasPrefix(rel, "ostree/deploy/"):
		return "ostree deployments"
	case strings.HasPrefix(rel, "boot/"):
		return "boot"
	case strings.HasPrefix(rel, "composefs/objects/"):
		if s := cfsNamed[rel]; s != "" {
			return s
		}
		return "composefs file objects"
	case strings.HasPrefix(rel, "composefs/"):
		return "composefs other"
	case strings.HasPrefix(rel, "ostree/bootc/storage/overlay/") && strings.Contains(rel, "/diff/"):
		return "containers-storage layer files"
	case strings.HasPrefix(rel, "ostree/bootc/storage/"):
		return "containers-storage metadata"
	}
	return "other"
}

// measureDisk walks the sysroot and maps every regular file's extents.
func measureDisk(tb testing.TB, sysroot string) *diskUse {
	tb.Helper()
	d := &diskUse{stores: map[string]*storeUse{}}
	for _, s := range storeOrder {
		d.stores[s] = &storeUse{}
	}
	d.used = usedBytes(tb, sysroot)
	var st unix.Statfs_t
	if err := unix.Statfs(sysroot, &st); err != nil {
		tb.Fatal(err)
	}
	d.blockSize = st.Bsize
	d.inodes = int64(st.Files - st.Ffree)
	if out, err := exec.Command("xfs_info", mountPoint(tb, sysroot)).Output(); err == nil {
		if m := regexp.MustCompile(`isize=([0-9]+)`).FindSubmatch(out); m != nil {
			fmt.Sscan(string(m[1]), &d.isize)
		}
	}
	// What composefs's images/ and streams/ name among its objects.
	cfsNamed := map[string]string{}
	for dir, store := range map[string]string{"images": "composefs images", "streams": "composefs streams"} {
		entries, _ := os.ReadDir(filepath.Join(sysroot, "composefs", dir))
		for _, e := range entries {
			if p, err := filepath.EvalSymlinks(filepath.Join(sysroot, "composefs", dir, e.Name())); err == nil && e.Type()&fs.ModeSymlink != 0 {
				if rel, err := filepath.Rel(sysroot, p); err == nil {
					cfsNamed[rel] = store
				}
			}
		}
	}
	type file struct {
		rel  string
		size int64
		blk  int64
	}
	byStore := map[string][]file{}
	inodes := map[uint64]bool{}
	where := map[uint64]int{} // inode -> index in byStore[its store]
	storeOfIno := map[uint64]string{}
	err := filepath.WalkDir(sysroot, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sysroot, p)
		s := storeOf(rel+"/", cfsNamed)
		if e.IsDir() {
			if fi, err := e.Info(); err == nil && rel != "." {
				d.stores[s].dirs++
				d.stores[s].dirBlocks += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		s = storeOf(rel, cfsNamed)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		sys := fi.Sys().(*syscall.Stat_t)
		if inodes[sys.Ino] {
			// A hard link (ostree's deployments): counted once, as
			// the repository's object it is.
			if old := storeOfIno[sys.Ino]; old != s && s == "ostree file objects" {
				f := byStore[old][where[sys.Ino]]
				byStore[old][where[sys.Ino]].rel = ""
				f.rel = rel
				where[sys.Ino] = len(byStore[s])
				storeOfIno[sys.Ino] = s
				byStore[s] = append(byStore[s], f)
			}
			return nil
		}
		inodes[sys.Ino] = true
		where[sys.Ino] = len(byStore[s])
		storeOfIno[sys.Ino] = s
		byStore[s] = append(byStore[s], file{rel, fi.Size(), sys.Blocks * 512})
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	claimed := map[uint64]bool{}
	bs := uint64(d.blockSize)
	for _, s := range storeOrder {
		u := d.stores[s]
		for _, f := range byStore[s] {
			if f.rel == "" {
				continue // moved to the repository's objects
			}
			u.files++
			u.apparent += f.size
			u.allocated += f.blk
			fh, err := os.Open(filepath.Join(sysroot, f.rel))
			if err != nil {
				tb.Fatal(err)
			}
			ext, err := reflink.Extents(fh)
			fh.Close()
			if err != nil {
				tb.Fatal(err)
			}
			end := (uint64(f.size) + bs - 1) / bs * bs
			for _, x := range ext {
				for off := uint64(0); off < x.Length; off += bs {
					b := (x.Physical + off) / bs
					if claimed[b] {
						continue
					}
					claimed[b] = true
					u.own += d.blockSize
					if x.Logical+off >= end {
						u.pastEOF += d.blockSize
					}
					if f.size <= 64 {
						u.smallBlocks += d.blockSize
					}
				}
			}
		}
	}
	return d
}

// report prints the table: per store its files, apparent bytes, the blocks
// it alone maps, those past EOF and those of small files.
func (d *diskUse) report() string {
	var b strings.Builder
	var mapped int64
	fmt.Fprintf(&b, "%-32s %8s %12s %12s %12s %10s %10s %6s %10s\n", "store", "files", "bytes", "allocated", "own blocks", "past EOF", "small", "dirs", "dir blocks")
	for _, s := range storeOrder {
		u := d.stores[s]
		if u.files == 0 && u.dirs == 0 {
			continue
		}
		mapped += u.own + u.dirBlocks
		fmt.Fprintf(&b, "%-32s %8d %12d %12d %12d %10d %10d %6d %10d\n", s, u.files, u.apparent, u.allocated, u.own, u.pastEOF, u.smallBlocks, u.dirs, u.dirBlocks)
	}
	fmt.Fprintf(&b, "%-32s %8s %12s %12s %12d\n", "files and dirs mapped", "", "", "", mapped)
	fmt.Fprintf(&b, "%-32s %8d %12s %12s %12d\n", "inodes in use", d.inodes, "", "", d.inodes*d.isize)
	fmt.Fprintf(&b, "%-32s %8s %12s %12s %12d\n", "statfs used", "", "", "", d.used)
	fmt.Fprintf(&b, "%-32s %8s %12s %12s %12d\n", "rest (log, btrees, free inodes)", "", "", "", d.used-mapped-d.inodes*d.isize)
	return b.String()
}

// sub is the growth of each store from before to d.
func (d *diskUse) sub(before *diskUse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-36s %12s %12s %12s\n", "store (own blocks)", "before", "after", "growth")
	var mb, ma int64
	row := func(name string, x, y int64) {
		if x != 0 || y != 0 {
			fmt.Fprintf(&b, "%-36s %12d %12d %12d\n", name, x, y, y-x)
		}
	}
	for _, s := range storeOrder {
		x, y := before.stores[s], d.stores[s]
		mb += x.own + x.dirBlocks
		ma += y.own + y.dirBlocks
		row(s+": file data", x.own-x.smallBlocks, y.own-y.smallBlocks)
		row(s+": files <= 64 bytes", x.smallBlocks, y.smallBlocks)
		row(s+": directories", x.dirBlocks, y.dirBlocks)
		row(s+": past EOF (in the above)", x.pastEOF, y.pastEOF)
	}
	row(fmt.Sprintf("inodes (%d bytes each)", d.isize), before.inodes*before.isize, d.inodes*d.isize)
	row("rest (log, btrees, free inodes)", before.used-mb-before.inodes*before.isize, d.used-ma-d.inodes*d.isize)
	row("statfs used", before.used, d.used)
	return b.String()
}

// imageBytes is the disk one copy of imgs takes: every distinct regular
// file body of their merged trees (what a deployment holds), each rounded
// up to whole blocks, as a filesystem without inline data stores it.
func imageBytes(imgs []*testimage.Image, blockSize int64) (bytes int64, files int) {
	seen := map[string]bool{}
	for _, img := range imgs {
		for _, e := range img.ExpectedTree() {
			if e.Type != testimage.TypeRegular || e.Hardlink != "" || seen[e.Digest.String()] {
				continue
			}
			seen[e.Digest.String()] = true
			bytes += (e.Size + blockSize - 1) / blockSize * blockSize
			files++
		}
	}
	return bytes, files
}

// mountPoint is the root of the filesystem that holds dir (xfs_info wants
// it, not a directory below).
func mountPoint(tb testing.TB, dir string) string {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		tb.Fatal(err)
	}
	for {
		up := filepath.Dir(dir)
		var pst unix.Stat_t
		if up == dir || unix.Stat(up, &pst) != nil || pst.Dev != st.Dev {
			return dir
		}
		dir = up
	}
}
