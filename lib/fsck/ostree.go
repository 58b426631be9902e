package fsck

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/xattr"
)

// ostreeCheck verifies a bare ostree repository itself, as `ostree fsck`
// does (every object hashes to its name, every metadata object parses,
// every commit's tree is complete, every ref names a commit), but reads
// each byte of a file object at most once together with the composefs
// objects: an ostree file object cloned from a composefs object shares
// its extents (FIEMAP), so the read that computes the composefs object's
// fs-verity digest also feeds the ostree object's checksum. Equal
// physical extents are equal bytes on disk, so nothing is trusted that
// was not hashed in this run. File objects that share nothing with a
// composefs object (or whose composefs object the kernel measured, and
// so is not read) are read on their own afterwards.
type ostreeCheck struct {
	c    *objChecker
	repo *ostree.Repo
	path string

	mu       sync.Mutex
	byExtent map[extentKey][]*ostreeFile
	files    []*ostreeFile
	// present: the checksums stored, per object type, sorted once the
	// index is complete (32 bytes each; a map of 100k would take 4x).
	present  map[string][][32]byte
	problems int
	indexed  bool // index has run

	checked atomic.Int64 // objects whose checksum was verified
	shared  atomic.Int64 // file objects hashed in a composefs object's read
}

// extentKey finds the ostree file objects that may share a composefs
// object's extents; the full extent lists are compared after.
type extentKey struct {
	physical uint64
	size     int64
}

type ostreeFile struct {
	sum     [32]byte // its name: objects/XX/rest.file (see name)
	size    int64
	extents []reflink.Extent
	h       hash.Hash // primed with the object's header
	claimed bool      // a composefs object's read feeds it
}

func newOstreeCheck(c *objChecker, repo *ostree.Repo) *ostreeCheck {
	return &ostreeCheck{
		c: c, repo: repo, path: repo.Path(),
		byExtent: map[extentKey][]*ostreeFile{},
		present:  map[string][][32]byte{},
	}
}

// name is the object's path relative to the repository.
func (f *ostreeFile) name() string {
	return ostree.ObjectPath(hex.EncodeToString(f.sum[:]), ostree.ObjectFile)
}

// has says whether an object of that type and checksum is stored.
func (o *ostreeCheck) has(typ, checksum string) bool {
	var sum [32]byte
	if _, err := hex.Decode(sum[:], []byte(checksum)); err != nil || len(checksum) != 64 {
		return false
	}
	_, ok := slices.BinarySearchFunc(o.present[typ], sum, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

func (o *ostreeCheck) problem(object, format string, args ...any) {
	o.mu.Lock()
	o.problems++
	o.mu.Unlock()
	detail := fmt.Sprintf(format, args...)
	if object != "" {
		detail = object + ": " + detail
	}
	o.c.add(Problem{Code: CodeOstreeFsck, Store: "ostree", Path: o.path, Detail: detail, size: -1})
}

// index walks objects/: metadata objects are hashed and parsed now, file
// objects are registered by their extents for the composefs read, empty
// files and symlinks are checked now.
func (o *ostreeCheck) index() error {
	root := filepath.Join(o.path, "objects")
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	dirs := make(chan string)
	var wg sync.WaitGroup
	for range o.c.opts.Jobs {
		wg.Go(func() {
			for d := range dirs {
				names, err := os.ReadDir(filepath.Join(root, d))
				if err != nil {
					o.problem("objects/"+d, "%v", err)
					continue
				}
				for _, e := range names {
					o.indexObject(d, e.Name())
				}
			}
		})
	}
	for _, e := range entries {
		if e.IsDir() && len(e.Name()) == 2 && isLowerHex(e.Name()) {
			dirs <- e.Name()
		}
	}
	close(dirs)
	wg.Wait()
	for _, sums := range o.present {
		slices.SortFunc(sums, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	}
	return nil
}

func (o *ostreeCheck) indexObject(dir, name string) {
	rest, typ, ok := strings.Cut(name, ".")
	checksum := dir + rest
	if !ok || !ostree.ValidChecksum(checksum) {
		return // not an object name (ostree fsck ignores these too)
	}
	rel := "objects/" + dir + "/" + name
	var sum [32]byte
	hex.Decode(sum[:], []byte(checksum))
	switch typ {
	case "file":
		o.indexFile(rel, checksum, sum)
	case "dirtree", "dirmeta", "commit":
		o.checkMetadata(rel, checksum, typ)
	default:
		return // .commitmeta, tombstones, signatures: not content-addressed
	}
	o.mu.Lock()
	o.present[typ] = append(o.present[typ], sum)
	o.mu.Unlock()
}

func (o *ostreeCheck) checkMetadata(rel, checksum, typ string) {
	data, err := os.ReadFile(filepath.Join(o.path, rel))
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != checksum {
		o.problem(rel, "corrupted object, content hashes to %x", got)
		return
	}
	switch typ {
	case "dirtree":
		_, err = ostree.ParseDirTree(data)
	case "dirmeta":
		_, err = ostree.ParseDirMeta(data)
	case "commit":
		_, err = ostree.ParseCommit(data)
	}
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	o.checked.Add(1)
}

func (o *ostreeCheck) indexFile(rel, checksum string, sum [32]byte) {
	p := filepath.Join(o.path, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		o.problem(rel, "%v", err)
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		o.checkSymlink(rel, p, checksum, st)
		return
	}
	meta, err := o.repo.FileObjectMeta(checksum)
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	h, err := ostree.NewFileHash(meta)
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	f := &ostreeFile{sum: sum, size: st.Size, h: h}
	if st.Size > 0 {
		if fd, err := os.Open(p); err == nil {
			f.extents, _ = reflink.Extents(fd) // no extents: read on its own
			fd.Close()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files = append(o.files, f)
	if k, ok := keyOf(f.extents, f.size); ok {
		o.byExtent[k] = append(o.byExtent[k], f)
	}
}

// keyOf is the lookup key of a file's extents, if every byte of it is
// in an extent on disk at a known place.
func keyOf(extents []reflink.Extent, size int64) (extentKey, bool) {
	if len(extents) == 0 {
		return extentKey{}, false
	}
	var covered uint64
	for i, e := range extents {
		const unknown = 0x2 | 0x4 | 0x8 // FIEMAP_EXTENT_UNKNOWN, DELALLOC, ENCODED
		if e.Flags&unknown != 0 || e.Physical == 0 || (i == 0 && e.Logical != 0) || (i > 0 && e.Logical != covered) {
			return extentKey{}, false
		}
		covered = e.Logical + e.Length
	}
	if covered < uint64(size) {
		return extentKey{}, false
	}
	return extentKey{extents[0].Physical, size}, true
}

func sameExtents(a, b []reflink.Extent) bool {
	return slices.EqualFunc(a, b, func(x, y reflink.Extent) bool {
		return x.Logical == y.Logical && x.Physical == y.Physical && x.Length == y.Length
	})
}

func (o *ostreeCheck) checkSymlink(rel, p, checksum string, st unix.Stat_t) {
	target, err := os.Readlink(p)
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	xs, err := xattr.List(p)
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	got, err := ostree.SymlinkChecksum(ostree.FileMeta{UID: st.Uid, GID: st.Gid, Mode: 0o777, Xattrs: xs}, target)
	if err != nil {
		o.problem(rel, "%v", err)
		return
	}
	if got != checksum {
		o.problem(rel, "corrupted symlink object, metadata and target hash to %s", got)
		return
	}
	o.checked.Add(1)
}

// claim returns the file objects whose extents are exactly extents (of a
// composefs object of that size) and that no other read feeds yet.
func (o *ostreeCheck) claim(extents []reflink.Extent, size int64) []*ostreeFile {
	k, ok := keyOf(extents, size)
	if !ok {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*ostreeFile
	for _, f := range o.byExtent[k] {
		if !f.claimed && sameExtents(f.extents, extents) {
			f.claimed = true
			out = append(out, f)
		}
	}
	return out
}

// hashers is where a composefs object's bytes go besides its own digest:
// the ostree objects sharing its extents.
func hashers(fs []*ostreeFile) []io.Writer {
	out := make([]io.Writer, len(fs))
	for i, f := range fs {
		out[i] = f.h
	}
	return out
}

// fed finishes file objects that a composefs read hashed completely
// (n bytes, the size of each); on a short read they are left for rest.
func (o *ostreeCheck) fed(fs []*ostreeFile, n int64) {
	for _, f := range fs {
		if n != f.size {
			o.mu.Lock()
			f.claimed = false
			f.h = nil // reset below, from the object itself
			o.mu.Unlock()
			continue
		}
		o.shared.Add(1)
		o.finish(f)
	}
}

func (o *ostreeCheck) finish(f *ostreeFile) {
	if got := f.h.Sum(nil); [32]byte(got) != f.sum {
		o.problem(f.name(), "corrupted file object, content and metadata hash to %x", got)
	} else {
		o.checked.Add(1)
	}
	f.h = nil
	f.extents = nil
}

// rest reads and hashes the file objects no composefs read covered.
func (o *ostreeCheck) rest() {
	work := make(chan *ostreeFile)
	var wg sync.WaitGroup
	for range o.c.opts.Jobs {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for f := range work {
				o.hashAlone(f, buf)
			}
		})
	}
	for _, f := range o.files {
		if !f.claimed {
			work <- f
		}
	}
	close(work)
	wg.Wait()
	o.files = nil
	o.byExtent = nil
}

func (o *ostreeCheck) hashAlone(f *ostreeFile, buf []byte) {
	if f.h == nil { // a composefs read fed it part-way: start again
		meta, err := o.repo.FileObjectMeta(hex.EncodeToString(f.sum[:]))
		if err == nil {
			f.h, err = ostree.NewFileHash(meta)
		}
		if err != nil {
			o.problem(f.name(), "%v", err)
			return
		}
	}
	fd, err := os.Open(filepath.Join(o.path, f.name()))
	if err != nil {
		o.problem(f.name(), "%v", err)
		return
	}
	defer fd.Close()
	if _, err := io.CopyBuffer(f.h, fd, buf); err != nil {
		o.problem(f.name(), "%v", err)
		return
	}
	o.finish(f)
}

// reachability checks that every commit's tree is complete and every ref
// names a commit that is there, as ostree fsck's traversal does.
func (o *ostreeCheck) reachability() {
	has := o.has
	seenTree := map[string]bool{}
	var walk func(tree, meta, where string)
	walk = func(tree, meta, where string) {
		if !has("dirmeta", meta) {
			o.problem(ostree.ObjectPath(meta, ostree.ObjectDirMeta), "missing, needed by %s", where)
		}
		if seenTree[tree] {
			return
		}
		seenTree[tree] = true
		if !has("dirtree", tree) {
			o.problem(ostree.ObjectPath(tree, ostree.ObjectDirTree), "missing, needed by %s", where)
			return
		}
		dt, err := o.repo.ReadDirTree(tree)
		if err != nil {
			return // reported by index
		}
		for _, f := range dt.Files {
			if !has("file", f.Checksum) {
				o.problem(ostree.ObjectPath(f.Checksum, ostree.ObjectFile), "missing, needed by %s/%s", where, f.Name)
			}
		}
		for _, d := range dt.Dirs {
			walk(d.TreeChecksum, d.MetaChecksum, where+"/"+d.Name)
		}
	}
	var commits []string
	for _, sum := range o.present["commit"] {
		commits = append(commits, hex.EncodeToString(sum[:]))
	}
	slices.Sort(commits)
	for _, c := range commits {
		commit, err := o.repo.ReadCommit(c)
		if err != nil {
			continue // reported by index
		}
		walk(commit.RootTree, commit.RootMeta, "commit "+c)
	}
	refs := filepath.Join(o.path, "refs")
	filepath.WalkDir(refs, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(o.path, p)
		if err != nil {
			o.problem(rel, "%v", err)
			return nil
		}
		if c := strings.TrimSpace(string(data)); !has("commit", c) {
			o.problem(rel, "names commit %q, which is not in the repository", c)
		}
		return nil
	})
}
