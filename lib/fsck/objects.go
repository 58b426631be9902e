package fsck

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/crc64iso"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/gc"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/splitstream"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// Problem codes: stable, kebab-case; scripts may match them.
const (
	CodeObjectDigestMismatch = "object-digest-mismatch" // an object's fs-verity digest is not its name
	CodeObjectUnreadable     = "object-unreadable"      // an object cannot be opened or read
	CodeObjectRecordMismatch = "object-record-mismatch" // a record kept with an object (an ostree checksum or the CRC-64 cfs-pull computed) does not match its bytes
	CodeStrayFile            = "stray-file"             // a name in objects/ that is no object (a writer's leftover)
	CodeEntryNotSymlink      = "entry-not-symlink"      // streams/ or images/ holds something else than a symlink
	CodeBrokenSymlink        = "broken-symlink"         // a stream, image or tag names nothing
	CodeStreamInvalid        = "stream-invalid"         // a splitstream does not parse
	CodeDanglingStreamRef    = "dangling-stream-ref"    // a stream names an object or stream that is missing
	CodeImageInvalid         = "image-invalid"          // an EROFS image does not parse
	CodeImageMissingObject   = "image-missing-object"   // an EROFS image redirects to a missing object
	CodeIncompleteImage      = "incomplete-image"       // a tag's image lacks its manifest, config, a layer or its EROFS image
	CodeOstreeFsck           = "ostree-fsck-failed"     // `ostree fsck` found the repository damaged
	CodeMissingLayer         = "missing-layer"          // a pinned containers-storage image lacks a layer or its tar-split
	CodeLayerMismatch        = "layer-content-mismatch" // a layer's diff files no longer give its diff ID
)

// Problem is one finding of Objects.
type Problem struct {
	Code   string   `json:"code"`
	Store  string   `json:"store"` // composefs, ostree, containers-storage
	Path   string   `json:"path"`
	Detail string   `json:"detail,omitempty"`
	Images []string `json:"images"` // the images it affects (tags, or store names)
	// Repaired: --repair fixed it.
	Repaired bool `json:"repaired"`

	object string // "XX/rest" for problems about one composefs object
	stream string // stream name for problems about a stream
	size   int64  // the object's size as an image records it, -1 unknown
}

// ObjectsReport is the result of Objects.
type ObjectsReport struct {
	ObjectsChecked int64 `json:"objectsChecked"`
	StreamsChecked int   `json:"streamsChecked"`
	ImagesChecked  int   `json:"imagesChecked"`
	TagsChecked    int   `json:"tagsChecked"`
	KernelMeasured int64 `json:"kernelMeasured"` // digests the kernel's fs-verity gave
	OstreeChecked  bool  `json:"ostreeChecked"`
	// OstreeObjectsChecked counts the ostree objects whose checksum our
	// own check verified (0 when `ostree fsck` ran instead), and
	// OstreeSharedReads the file objects among them hashed in the read of
	// the composefs object whose extents they share.
	OstreeObjectsChecked int64     `json:"ostreeObjectsChecked"`
	OstreeSharedReads    int64     `json:"ostreeSharedReads"`
	CStorageImages       int       `json:"containersStorageImages"`
	CStorageLayers       int       `json:"containersStorageLayers"`
	Problems             []Problem `json:"problems"`
	Repaired             int       `json:"repaired"`
	OK                   bool      `json:"ok"`
	Next                 []string  `json:"next"` // what to run about what remains
	ostreeUnavailable    string
}

// ObjectsOptions tune Objects.
type ObjectsOptions struct {
	Repair bool
	// Jobs digest objects in parallel; 0 means 2.
	Jobs int
	// Progress, if set, is called now and then with objects checked.
	Progress func(checked int64)
	// GraphRoot and RunRoot of bootc's containers-storage, as for Images.
	GraphRoot, RunRoot string
	// Ostree chooses how the ostree repository is checked: "" by our
	// own check where it is a bare repository (a host's always is),
	// which hashes file objects in the same read as the composefs
	// objects they share extents with, else by `ostree fsck` from PATH;
	// a path runs that `ostree fsck` binary whatever the mode; "-" skips
	// the ostree repository.
	Ostree string
}

type objChecker struct {
	h      *sysroot.Host
	opts   ObjectsOptions
	repo   *composefs.Repository
	ostree *ostreeCheck // nil unless we check the ostree repository ourselves
	rep    *ObjectsReport
	mu     sync.Mutex
}

func (c *objChecker) add(p Problem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.Images == nil {
		p.Images = []string{}
	}
	c.rep.Problems = append(c.rep.Problems, p)
}

// Objects checks the integrity of every store of h: the composefs
// repository object by object (fs-verity digest against the name, from
// the kernel where verity is on), its streams, images and tags; the
// ostree repository with the real `ostree fsck`, run at the same time;
// bootc's containers-storage images that deployments pin, layer by
// layer. Memory does not grow with the number of objects: they are
// walked directory by directory, and only problems are kept.
func Objects(h *sysroot.Host, opts ObjectsOptions) (*ObjectsReport, error) {
	c := &objChecker{h: h, opts: opts, rep: &ObjectsReport{Problems: []Problem{}, Next: []string{}}}
	if c.opts.Jobs <= 0 {
		c.opts.Jobs = 2
	}
	if c.opts.GraphRoot == "" {
		c.opts.GraphRoot = cstorage.DefaultGraphRoot(h.Root)
	}
	var ostreeDone chan struct{}
	if h.Kind == sysroot.KindOstree && c.opts.Ostree != "-" {
		if err := c.startOstree(); err != nil {
			return nil, err
		}
		if c.ostree != nil {
			defer c.ostree.repo.Close()
		}
		if c.ostree == nil {
			ostreeDone = make(chan struct{})
			go func() { defer close(ostreeDone); c.ostreeFsck() }()
		}
	}

	repo, err := composefs.Open(filepath.Join(h.Root, "composefs"))
	if err != nil && !errors.Is(err, composefs.ErrNotRepository) {
		return nil, err
	}
	if err == nil {
		c.repo = repo
		defer repo.Close()
		// Repair replaces and removes files: no writer may be at work.
		if opts.Repair {
			if err := repo.LockExclusive(); err != nil {
				return nil, err
			}
		}
		if err := c.composefs(); err != nil {
			return nil, err
		}
	}
	if c.ostree != nil {
		if err := c.indexOstree(); err != nil {
			return nil, err
		}
		c.ostree.rest()
		c.ostree.reachability()
		c.rep.OstreeChecked = true
		c.rep.OstreeObjectsChecked = c.ostree.checked.Load()
		c.rep.OstreeSharedReads = c.ostree.shared.Load()
	}
	if err := c.cstorage(); err != nil {
		return nil, err
	}
	if ostreeDone != nil {
		<-ostreeDone
	}
	if opts.Repair {
		c.repair()
	}
	c.finish()
	return c.rep, nil
}

// composefs checks the repository: objects, then streams and images,
// then tags, then which images each problem affects.
//
// Streams and images come first: an EROFS image is parsed whole (about
// 600 bytes per entry with its bytes), and it is garbage before the
// ostree index (about 300 bytes per file object, held until every object
// is read) is built, so the two never add up.
func (c *objChecker) composefs() error {
	streams, err := c.symlinks("streams")
	if err != nil {
		return err
	}
	for _, name := range streams {
		c.checkStream(name)
	}
	images, err := c.symlinks("images")
	if err != nil {
		return err
	}
	for _, name := range images {
		c.checkImage(name)
	}
	// Collect the last image now, so that the heap's next goal is set
	// by what stays live and not by the parsed image.
	runtime.GC()
	if err := c.indexOstree(); err != nil {
		return err
	}
	if err := c.objects(); err != nil {
		return err
	}
	c.checkRefs()
	return c.attribute()
}

// indexOstree builds the index of the ostree file objects by their
// extents (once), before the composefs objects are read.
func (c *objChecker) indexOstree() error {
	if c.ostree == nil || c.ostree.indexed {
		return nil
	}
	c.ostree.indexed = true
	return c.ostree.index()
}

// objects walks objects/XX/ with Jobs workers, one directory at a time.
func (c *objChecker) objects() error {
	root := filepath.Join(c.repo.Path(), "objects")
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	restLen := 2*c.repo.Algorithm().Size() - 2
	dirs := make(chan string)
	var wg sync.WaitGroup
	var checked, kernel atomic.Int64
	for i := 0; i < c.opts.Jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range dirs {
				names, err := os.ReadDir(filepath.Join(root, d))
				if err != nil {
					c.add(Problem{Code: CodeObjectUnreadable, Store: "composefs", Path: filepath.Join(root, d), Detail: err.Error(), size: -1})
					continue
				}
				for _, e := range names {
					p := filepath.Join(root, d, e.Name())
					if len(e.Name()) != restLen || !isLowerHex(e.Name()) || !e.Type().IsRegular() {
						c.add(Problem{Code: CodeStrayFile, Store: "composefs", Path: p, Detail: "not an object name", size: -1})
						continue
					}
					byKernel, err := c.checkObject(p, d+e.Name())
					if byKernel {
						kernel.Add(1)
					}
					if err != nil {
						c.add(*err)
					}
					if n := checked.Add(1); c.opts.Progress != nil && n%1024 == 0 {
						c.opts.Progress(n)
					}
				}
			}
		}()
	}
	for _, e := range entries {
		switch {
		case e.IsDir() && len(e.Name()) == 2 && isLowerHex(e.Name()):
			dirs <- e.Name()
		default:
			// objects/ holds only XX/ directories; anything else is a
			// writer's temporary file left by a crash (.tmp-object-…).
			c.add(Problem{Code: CodeStrayFile, Store: "composefs", Path: filepath.Join(root, e.Name()), Detail: "not an object directory", size: -1})
		}
	}
	close(dirs)
	wg.Wait()
	c.rep.ObjectsChecked = checked.Load()
	c.rep.KernelMeasured = kernel.Load()
	if c.opts.Progress != nil {
		c.opts.Progress(c.rep.ObjectsChecked)
	}
	return nil
}

// checkObject compares an object's fs-verity digest with its name: the
// kernel's measurement where verity is enabled on it, else ours.
func (c *objChecker) checkObject(path, hexName string) (bool, *Problem) {
	obj := hexName[:2] + "/" + hexName[2:]
	f, err := os.Open(path)
	if err != nil {
		return false, &Problem{Code: CodeObjectUnreadable, Store: "composefs", Path: path, Detail: err.Error(), object: obj, size: -1}
	}
	defer f.Close()
	// Content records (the ostree checksums cfs-pull kept with the
	// object, which cfs-clone names ostree objects by without reading)
	// are checked in the same read: a wrong one would name the bytes
	// wrongly in every later clone.
	// The CRC-64/ISO kept beside them (what cfs-clone --to
	// containers-storage writes into tar-split without reading) too.
	objRecords, recErr := composefs.ReadObjectRecords(f)
	records := objRecords.Content
	if recErr != nil {
		records = []composefs.Record{{}} // unparseable: reported below
	}
	recordHashes := make([]io.Writer, len(records), len(records)+1)
	for i, r := range records {
		recordHashes[i] = composefs.NewRecordHash(r.Prefix)
	}
	var crc *crc64iso.Digest
	if objRecords.HasCRC64 {
		crc = crc64iso.New()
		recordHashes = append(recordHashes, crc)
	}
	var got []byte
	kernel := false
	if alg, d, err := fsverity.Measure(f); err == nil && alg == c.repo.Algorithm() {
		got, kernel = d, true
		// The kernel spares the digest, not the records' read.
		if len(recordHashes) > 0 {
			if _, err := io.Copy(io.MultiWriter(recordHashes...), f); err != nil {
				return true, &Problem{Code: CodeObjectUnreadable, Store: "composefs", Path: path, Detail: err.Error(), object: obj, size: -1}
			}
		}
	} else {
		// The ostree file objects cloned from this object share its
		// extents: this one read hashes them too.
		var shared []*ostreeFile
		var r io.Reader = f
		if c.ostree != nil {
			if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
				if extents, err := reflink.Extents(f); err == nil {
					shared = c.ostree.claim(extents, fi.Size())
				}
			}
		}
		if sinks := append(hashers(shared), recordHashes...); len(sinks) > 0 {
			r = io.TeeReader(f, io.MultiWriter(sinks...))
		}
		h := fsverity.New(c.repo.Algorithm())
		n, err := h.ReadFrom(r)
		if len(shared) > 0 {
			c.ostree.fed(shared, n)
		}
		if err != nil {
			return false, &Problem{Code: CodeObjectUnreadable, Store: "composefs", Path: path, Detail: err.Error(), object: obj, size: -1}
		}
		got = h.Sum(nil)
	}
	if hex.EncodeToString(got) != hexName {
		how := "computed"
		if kernel {
			how = "measured by the kernel"
		}
		size := int64(-1)
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
		return kernel, &Problem{Code: CodeObjectDigestMismatch, Store: "composefs", Path: path, Detail: how + " " + hex.EncodeToString(got), object: obj, size: size}
	}
	for i, r := range records {
		sum := recordHashes[i].(hash.Hash).Sum(nil)
		if recErr != nil || !bytes.Equal(sum, r.Sum[:]) {
			detail := fmt.Sprintf("content record %s (ostree checksum) does not match the bytes, which give %x", composefs.RecordXattr, sum)
			if recErr != nil {
				detail = fmt.Sprintf("content record %s does not parse: %v", composefs.RecordXattr, recErr)
			}
			return kernel, &Problem{Code: CodeObjectRecordMismatch, Store: "composefs", Path: path, Detail: detail, object: obj, size: -1}
		}
	}
	if crc != nil && crc.Sum64() != objRecords.CRC64 {
		detail := fmt.Sprintf("CRC-64 record in %s (%016x) does not match the bytes, which give %016x", composefs.RecordXattr, objRecords.CRC64, crc.Sum64())
		return kernel, &Problem{Code: CodeObjectRecordMismatch, Store: "composefs", Path: path, Detail: detail, object: obj, size: -1}
	}
	return kernel, nil
}

// symlinks lists <category>/ (without refs), reporting entries that are
// not symlinks or that name nothing.
func (c *objChecker) symlinks(category string) ([]string, error) {
	dir := filepath.Join(c.repo.Path(), category)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Name() == "refs" && e.IsDir():
		case e.Type()&fs.ModeSymlink == 0:
			c.add(Problem{Code: CodeEntryNotSymlink, Store: "composefs", Path: p, size: -1})
		default:
			if _, err := os.Stat(p); err != nil {
				c.add(Problem{Code: CodeBrokenSymlink, Store: "composefs", Path: p, Detail: "names a missing object", stream: streamName(category, e.Name()), object: linkObject(p), size: -1})
				continue
			}
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func streamName(category, name string) string {
	if category == "streams" {
		return name
	}
	return ""
}

// linkObject is the object a repository symlink names ("XX/rest"), from
// its text, whether or not it exists.
func linkObject(p string) string {
	t, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	dir, rest := filepath.Split(t)
	return filepath.Base(dir) + "/" + rest
}

func (c *objChecker) checkStream(name string) {
	c.rep.StreamsChecked++
	p := filepath.Join(c.repo.Path(), "streams", name)
	data, err := os.ReadFile(p)
	if err != nil {
		c.add(Problem{Code: CodeObjectUnreadable, Store: "composefs", Path: p, Detail: err.Error(), stream: name, size: -1})
		return
	}
	sr, err := splitstream.NewReader(data, uint8(c.repo.Algorithm()))
	if err != nil {
		c.add(Problem{Code: CodeStreamInvalid, Store: "composefs", Path: p, Detail: err.Error(), stream: name, size: -1})
		return
	}
	defer sr.Close()
	for _, id := range sr.ObjectRefs {
		if !c.repo.HasObject(id) {
			c.add(Problem{Code: CodeDanglingStreamRef, Store: "composefs", Path: p, Detail: "object " + composefs.ObjectName(id) + " is missing", stream: name, object: composefs.ObjectName(id), size: -1})
		}
	}
	names := make([]string, 0, len(sr.NamedRefs))
	for n := range sr.NamedRefs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if id := sr.NamedRefs[n]; !c.repo.HasObject(id) {
			c.add(Problem{Code: CodeDanglingStreamRef, Store: "composefs", Path: p, Detail: "named ref " + n + ": object " + composefs.ObjectName(id) + " is missing", stream: name, object: composefs.ObjectName(id), size: -1})
		}
	}
}

func (c *objChecker) checkImage(name string) {
	c.rep.ImagesChecked++
	p := filepath.Join(c.repo.Path(), "images", name)
	data, unmap, err := mapFile(p)
	if err != nil {
		c.add(Problem{Code: CodeObjectUnreadable, Store: "composefs", Path: p, Detail: err.Error(), size: -1})
		return
	}
	// Nothing read from the image outlives this function.
	defer unmap()
	// The image is checked whole before its objects are: a damaged image
	// is one problem, not a few missing objects and then a parse error.
	var missing []Problem
	err = erofs.ForEachExternal(data, func(obj string, size int64) error {
		if _, err := os.Lstat(filepath.Join(c.repo.Path(), "objects", obj)); err != nil {
			missing = append(missing, Problem{Code: CodeImageMissingObject, Store: "composefs", Path: p, Detail: "object " + obj + " is missing", object: obj, size: size})
		}
		return nil
	})
	if err != nil {
		c.add(Problem{Code: CodeImageInvalid, Store: "composefs", Path: p, Detail: err.Error(), size: -1})
		return
	}
	for _, m := range missing {
		c.add(m)
	}
}

// mapFile maps a file read-only: an EROFS image of 100k entries is tens
// of MB, which as a heap copy would count twice towards the collector's
// goal while the image is parsed. unmap must be called once nothing
// refers to the bytes any more.
func mapFile(p string) ([]byte, func(), error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 || !fi.Mode().IsRegular() {
		data, err := io.ReadAll(f) // nothing to map, or not a file: read what is there
		return data, func() {}, err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: p, Err: err}
	}
	return data, func() { unix.Munmap(data) }, nil
}

// checkRefs: every tag names a complete image (manifest and config with
// the right digests, each layer's stream, the EROFS image); every ref
// resolves.
func (c *objChecker) checkRefs() {
	for _, category := range []string{"streams", "images"} {
		dir := filepath.Join(c.repo.Path(), category, "refs")
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if d.Type()&fs.ModeSymlink == 0 {
				c.add(Problem{Code: CodeEntryNotSymlink, Store: "composefs", Path: p, size: -1})
				return nil
			}
			if _, err := os.Stat(p); err != nil {
				c.add(Problem{Code: CodeBrokenSymlink, Store: "composefs", Path: p, Detail: "names a missing stream or object", Images: tagOf(c.repo.Path(), p), size: -1})
			}
			return nil
		})
	}
	tags, _ := c.repo.Tags()
	sort.Strings(tags)
	for _, t := range tags {
		c.rep.TagsChecked++
		md, err := c.repo.ResolveTag(t)
		if err != nil {
			continue // broken: reported above
		}
		p := filepath.Join(c.repo.Path(), "streams", "refs", "oci", composefs.EncodeTag(t))
		img, err := oci.OpenImage(c.repo, md)
		if err != nil {
			if _, serr := os.Stat(p); serr == nil {
				c.add(Problem{Code: CodeIncompleteImage, Store: "composefs", Path: p, Detail: err.Error(), Images: []string{t}, size: -1})
			}
			continue
		}
		var missing []string
		for _, d := range img.DiffIDs {
			if _, ok, _ := c.repo.StreamID(composefs.LayerContentID(d)); !ok {
				missing = append(missing, "layer "+d)
			}
		}
		if img.ImageID == nil || !c.repo.HasObject(img.ImageID) {
			missing = append(missing, "its EROFS image")
		}
		if len(missing) > 0 {
			c.add(Problem{Code: CodeIncompleteImage, Store: "composefs", Path: p, Detail: "missing " + strings.Join(missing, ", "), Images: []string{t}, size: -1})
		}
	}
}

func tagOf(repo, p string) []string {
	rel, err := filepath.Rel(filepath.Join(repo, "streams", "refs", "oci"), p)
	if err != nil || strings.Contains(rel, "/") || strings.HasPrefix(rel, "..") {
		return nil
	}
	return []string{composefs.DecodeTag(rel)}
}

// attribute names, for each problem about an object or a stream, the
// tagged images that use it, and the size the image records for an
// object (which a repair needs to find a copy). It walks one image at a
// time and keeps only the problems' names.
func (c *objChecker) attribute() error {
	objs := map[string][]int{}
	streams := map[string][]int{}
	for i, p := range c.rep.Problems {
		if p.object != "" {
			objs[p.object] = append(objs[p.object], i)
		}
		if p.stream != "" {
			streams[p.stream] = append(streams[p.stream], i)
		}
	}
	if len(objs) == 0 && len(streams) == 0 {
		return nil
	}
	tags, err := c.repo.Tags()
	if err != nil {
		return err
	}
	sort.Strings(tags)
	for _, t := range tags {
		md, err := c.repo.ResolveTag(t)
		if err != nil {
			continue
		}
		hit := map[int]bool{}
		mark := func(idx []int) {
			for _, i := range idx {
				hit[i] = true
			}
		}
		markStream := func(name string) {
			mark(streams[name])
			p := filepath.Join(c.repo.Path(), "streams", name)
			mark(objs[linkObject(p)])
			data, err := os.ReadFile(p)
			if err != nil {
				return
			}
			sr, err := splitstream.NewReader(data, uint8(c.repo.Algorithm()))
			if err != nil {
				return
			}
			for _, id := range sr.ObjectRefs {
				mark(objs[composefs.ObjectName(id)])
			}
			for _, id := range sr.NamedRefs {
				mark(objs[composefs.ObjectName(id)])
			}
			sr.Close()
		}
		markStream(composefs.ManifestContentID(md))
		img, err := oci.OpenImage(c.repo, md)
		if err == nil {
			markStream(composefs.ConfigContentID(img.ConfigDigest))
			for _, d := range img.DiffIDs {
				markStream(composefs.LayerContentID(d))
			}
			if img.ImageID != nil {
				name := composefs.ObjectName(img.ImageID)
				mark(objs[name])
				if data, unmap, err := mapFile(c.repo.ObjectPath(img.ImageID)); err == nil {
					// A damaged image was reported by checkImage and names
					// nothing here, as before the walk streamed.
					type use struct {
						i    int
						size int64
					}
					var uses []use
					werr := erofs.ForEachExternal(data, func(obj string, size int64) error {
						for _, i := range objs[obj] {
							uses = append(uses, use{i, size})
						}
						return nil
					})
					unmap()
					if werr != nil {
						uses = nil
					}
					for _, u := range uses {
						hit[u.i] = true
						if c.rep.Problems[u.i].size < 0 {
							c.rep.Problems[u.i].size = u.size
						}
					}
				}
			}
		}
		for i := range hit {
			c.rep.Problems[i].Images = appendUnique(c.rep.Problems[i].Images, t)
		}
	}
	return nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// ostreeFsck runs the real `ostree fsck` on the repository and reports
// its verdict through ours.
// startOstree opens the ostree repository for our own check and indexes
// it, when Options.Ostree asks for that and the repository is bare; it
// leaves c.ostree nil for `ostree fsck` otherwise.
func (c *objChecker) startOstree() error {
	if c.opts.Ostree != "" {
		return nil
	}
	path := filepath.Join(c.h.Root, sysroot.OstreeRepoPath)
	repo, err := ostree.Open(path)
	if err != nil {
		// Not openable as we expect: `ostree fsck` gives its own verdict.
		return nil
	}
	if repo.Mode() != ostree.ModeBare {
		repo.Close()
		return nil
	}
	c.ostree = newOstreeCheck(c, repo)
	return nil
}

func (c *objChecker) ostreeFsck() {
	bin := c.opts.Ostree
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("ostree"); err != nil {
			c.rep.ostreeUnavailable = "ostree is not installed; the ostree repository was not checked"
			return
		}
	}
	repo := filepath.Join(c.h.Root, sysroot.OstreeRepoPath)
	var out bytes.Buffer
	cmd := exec.Command(bin, "fsck", "--repo="+repo)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	c.rep.OstreeChecked = true
	if err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		detail := lines[len(lines)-1]
		c.add(Problem{Code: CodeOstreeFsck, Store: "ostree", Path: repo, Detail: detail, size: -1})
	}
}

// cstorage checks the containers-storage images deployments pin: each
// layer exists, has its tar-split, and its diff files reassemble to its
// diff ID (c/storage's Diff, which checks every file's CRC64).
func (c *objChecker) cstorage() error {
	if _, err := os.Stat(c.opts.GraphRoot); err != nil || c.repo == nil {
		return nil
	}
	live, err := gc.LiveImages(c.h)
	if err != nil {
		return err
	}
	configs := map[string]string{}
	for _, md := range live.Manifests {
		if img, err := oci.OpenImage(c.repo, md); err == nil {
			configs[strings.TrimPrefix(img.ConfigDigest, "sha256:")] = bootcconv.DefaultTag(md)
		}
	}
	store, err := cstorage.Open(c.opts.GraphRoot, c.opts.RunRoot)
	if err != nil {
		return err
	}
	defer store.Close()
	ids := make([]string, 0, len(configs))
	for id := range configs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		img, err := store.FindImage(id)
		if errors.Is(err, cstorage.ErrImageUnknown) {
			continue // absent: `cfs-fsck images` says so
		}
		name := configs[id]
		if err != nil {
			c.add(Problem{Code: CodeMissingLayer, Store: "containers-storage", Path: store.GraphRoot(), Detail: err.Error(), Images: []string{name}, size: -1})
			continue
		}
		c.rep.CStorageImages++
		for _, l := range img.Layers {
			c.rep.CStorageLayers++
			lp := filepath.Join(store.GraphRoot(), "overlay", l.ID, "diff")
			if !l.TarSplit {
				c.add(Problem{Code: CodeMissingLayer, Store: "containers-storage", Path: filepath.Join(store.GraphRoot(), "overlay-layers", l.ID+".tar-split.gz"), Detail: "layer " + l.DiffID + " has no tar-split", Images: []string{name}, size: -1})
				continue
			}
			if _, err := os.Stat(lp); err != nil {
				c.add(Problem{Code: CodeMissingLayer, Store: "containers-storage", Path: lp, Detail: "layer " + l.DiffID + ": " + err.Error(), Images: []string{name}, size: -1})
				continue
			}
			rc, err := store.Diff(l.ID)
			if err == nil {
				h := sha256.New()
				_, err = io.Copy(h, rc)
				rc.Close()
				if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); err == nil && got != l.DiffID {
					err = fmt.Errorf("reassembles to %s", got)
				}
			}
			if err != nil {
				c.add(Problem{Code: CodeLayerMismatch, Store: "containers-storage", Path: lp, Detail: "layer " + l.DiffID + ": " + err.Error(), Images: []string{name}, size: -1})
			}
		}
	}
	return nil
}

func (c *objChecker) finish() {
	sort.SliceStable(c.rep.Problems, func(i, j int) bool { return c.rep.Problems[i].Path < c.rep.Problems[j].Path })
	open := 0
	reimport, repairable, cstor, ostreeBad := false, false, false, false
	for _, p := range c.rep.Problems {
		if p.Repaired {
			continue
		}
		open++
		switch {
		case p.Store == "ostree":
			ostreeBad = true
		case p.Store == "containers-storage":
			cstor = true
		case p.Code == CodeStrayFile || p.Code == CodeObjectDigestMismatch || p.Code == CodeObjectRecordMismatch || p.Code == CodeDanglingStreamRef || p.Code == CodeImageMissingObject || p.Code == CodeBrokenSymlink:
			repairable = true
			reimport = reimport || len(p.Images) > 0
		default:
			reimport = reimport || len(p.Images) > 0
		}
	}
	c.rep.OK = open == 0
	if repairable && !c.opts.Repair {
		c.rep.Next = append(c.rep.Next, "cfs-fsck objects --repair (restores objects another store holds, removes stray files)")
	}
	if reimport && (c.opts.Repair || !repairable) {
		c.rep.Next = append(c.rep.Next, "cfs-upgrade (or bootc upgrade) to re-pull the damaged images listed above")
	}
	if cstor {
		c.rep.Next = append(c.rep.Next, "cfs-fsck images --repair after removing the damaged containers-storage images (podman rmi), to restore them from composefs")
	}
	if ostreeBad {
		c.rep.Next = append(c.rep.Next, "ostree fsck --repo=<sysroot>/ostree/repo --delete (then cfs-upgrade re-synthesizes the commit)")
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f') {
			return false
		}
	}
	return s != ""
}

// WriteHuman prints the report for a person at a terminal: the counts,
// the problems grouped by the image they affect, and what to run next.
func (r *ObjectsReport) WriteHuman(w io.Writer) {
	fmt.Fprintf(w, "cfs-fsck objects: composefs: %d objects (%d measured by the kernel), %d streams, %d images, %d tags\n",
		r.ObjectsChecked, r.KernelMeasured, r.StreamsChecked, r.ImagesChecked, r.TagsChecked)
	switch {
	case r.ostreeUnavailable != "":
		fmt.Fprintf(w, "cfs-fsck objects: ostree: %s\n", r.ostreeUnavailable)
	case r.OstreeChecked && r.OstreeObjectsChecked > 0:
		fmt.Fprintf(w, "cfs-fsck objects: ostree: %d objects (%d file objects hashed in the composefs read)\n", r.OstreeObjectsChecked, r.OstreeSharedReads)
	case r.OstreeChecked:
		fmt.Fprintln(w, "cfs-fsck objects: ostree: ostree fsck ran")
	}
	fmt.Fprintf(w, "cfs-fsck objects: containers-storage: %d pinned images, %d layers\n", r.CStorageImages, r.CStorageLayers)
	groups := map[string][]Problem{}
	var order []string
	for _, p := range r.Problems {
		keys := p.Images
		if len(keys) == 0 {
			keys = []string{""}
		}
		for _, k := range keys {
			if groups[k] == nil {
				order = append(order, k)
			}
			groups[k] = append(groups[k], p)
		}
	}
	sort.Strings(order)
	for _, k := range order {
		if k == "" {
			fmt.Fprintln(w, "not part of any tagged image:")
		} else {
			fmt.Fprintf(w, "%s:\n", k)
		}
		for _, p := range groups[k] {
			line := fmt.Sprintf("  [%s] %s", p.Code, p.Path)
			if p.Detail != "" {
				line += ": " + p.Detail
			}
			if p.Repaired {
				line += " [REPAIRED]"
			}
			fmt.Fprintln(w, line)
		}
	}
	open := len(r.Problems) - r.Repaired
	switch {
	case len(r.Problems) == 0:
		fmt.Fprintln(w, "cfs-fsck objects: no problems found")
	case open == 0:
		fmt.Fprintf(w, "cfs-fsck objects: %d problem(s) found, all repaired\n", len(r.Problems))
	default:
		fmt.Fprintf(w, "cfs-fsck objects: %d problem(s) found, %d repaired, %d remain\n", len(r.Problems), r.Repaired, open)
	}
	for _, n := range r.Next {
		fmt.Fprintf(w, "Next: %s\n", n)
	}
}
