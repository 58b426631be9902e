package cstorage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	drivers "go.podman.io/storage/drivers"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/crc64iso"
)

// LayerTar is a layer's tar rebuilt from its tar-split and the files of its
// diff directory, read as an io.Reader. Every file body is checked against
// the CRC64 tar-split recorded for it as its last byte is read, and its
// diff file must have the size tar-split recorded.
//
// A reader that wants each body cloned and hashed before it reaches the
// tar (cfs-pull: an object per body) calls Prefetch first: workers then
// open the bodies ahead of the reader, hand them to a BodyPrep and read
// the result once, for the CRC check and the BodyPrep's own digests, and
// the reader takes each one with NextPrepared right after its member's
// header. The tar then carries the prepared file's bytes.
type LayerTar struct {
	store   *Store
	layer   Layer
	tsFile  *os.File
	gz      *gzip.Reader
	unpack  tsstorage.Unpacker
	getters []drivers.FileGetCloser // the layer's, then its parents'
	prefix  string                  // <graph root>/overlay/, where every body must be
	diffDir int                     // the layer's diff directory (O_PATH), -1 if not at hand

	seg []byte // rest of the current segment

	pre *prefetcher // nil: bodies are opened as the reader reaches them
	cur *item       // the prefetched body being read

	inBody   bool
	asked    bool   // the body was taken by NextPrepared, whose caller names the member
	name     string // the current body's member name
	diffFile *os.File
	src      *os.File // diffFile, or the clone it was redirected to
	mem      []byte   // or the body's bytes, read by a prefetch worker
	off      int64
	size     int64
	crc      *crc64iso.Digest
	want     []byte
	verified bool // the body was checked against its CRC64 when prefetched

	err error
}

// OpenLayer opens layer i of img. It fails if the store kept no tar-split
// for the layer (then only Store.Diff can produce its tar, by copying).
func (s *Store) OpenLayer(img *Image, i int) (*LayerTar, error) {
	l := img.Layers[i]
	where := fmt.Sprintf("containers-storage layer %s", l.ID)
	f, err := os.Open(s.tarSplitPath(l.ID))
	if err != nil {
		return nil, fmt.Errorf("%s: tar-split: %w", where, err)
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: tar-split %s: %w", where, f.Name(), err)
	}
	t := &LayerTar{store: s, layer: l, tsFile: f, gz: gz, unpack: newTarSplitReader(gz), crc: crc64iso.New(),
		prefix: filepath.Join(s.graphRoot, "overlay") + "/", diffDir: -1}
	if fd, err := unix.Open(filepath.Join(t.prefix, l.ID, "diff"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		t.diffDir = fd
	}
	driver, err := s.s.GraphDriver()
	if err != nil {
		t.Close()
		return nil, err
	}
	dg, ok := driver.(drivers.DiffGetterDriver)
	if !ok {
		t.Close()
		return nil, fmt.Errorf("%s: the %s driver cannot hand out layer files", where, driver.String())
	}
	for j := i; j >= 0; j-- {
		g, err := dg.DiffGetter(img.Layers[j].ID)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		t.getters = append(t.getters, g)
	}
	return t, nil
}

// Close releases the tar-split and the diff directories, and drops every
// prefetched body nobody took.
func (t *LayerTar) Close() error {
	t.closeBody()
	if t.pre != nil {
		t.pre.stopAll()
	}
	for _, g := range t.getters {
		g.Close()
	}
	if t.diffDir >= 0 {
		unix.Close(t.diffDir)
	}
	t.gz.Close()
	return t.tsFile.Close()
}

func (t *LayerTar) fail(format string, args ...any) error {
	if t.err == nil {
		t.err = fmt.Errorf(format, args...)
	}
	return t.err
}

// Read gives the next bytes of the layer tar.
func (t *LayerTar) Read(p []byte) (int, error) {
	for t.err == nil {
		if len(t.seg) > 0 {
			n := copy(p, t.seg)
			t.seg = t.seg[n:]
			return n, nil
		}
		if t.inBody {
			return t.readBody(p)
		}
		if err := t.next(); err != nil {
			return 0, err
		}
	}
	return 0, t.err
}

// next moves to the next tar-split entry that has bytes.
func (t *LayerTar) next() error {
	it, err := t.nextItem()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return t.fail("tar-split: %v", err)
	}
	e := it.e
	switch e.Type {
	case tsstorage.SegmentType:
		t.seg = e.Payload
	case tsstorage.FileType:
		if e.Size > 0 {
			if err := t.startBody(it); err != nil {
				return t.fail("member %q: %v", e.GetName(), err)
			}
			t.asked = false
		}
	default:
		return t.fail("tar-split: unknown entry type %d", e.Type)
	}
	return nil
}

// nextItem is the next tar-split entry, with its prefetched body if any.
func (t *LayerTar) nextItem() (*item, error) {
	if t.pre == nil {
		e, err := t.unpack.Next()
		if err != nil {
			return nil, err
		}
		return &item{e: e}, nil
	}
	it, ok := <-t.pre.items
	if !ok {
		return nil, io.EOF
	}
	if it.unpackErr != nil {
		return nil, it.unpackErr
	}
	return it, nil
}

// startBody starts reading the body of a tar-split file entry: from the
// file prefetched for it, or from its diff file opened now. Its errors do
// not name the member, the callers do.
func (t *LayerTar) startBody(it *item) error {
	e := it.e
	if it.done != nil {
		<-it.done
		t.cur = it
		if it.err != nil {
			return it.err
		}
		t.inBody, t.name, t.diffFile, t.src, t.mem, t.off, t.size, t.want, t.verified = true, e.GetName(), nil, it.src, it.data, 0, e.Size, e.Payload, true
		return nil
	}
	f, err := t.openDiff(e)
	if err != nil {
		return err
	}
	t.inBody, t.name, t.diffFile, t.src, t.off, t.size, t.want, t.verified = true, e.GetName(), f, f, 0, e.Size, e.Payload, false
	t.crc.Reset()
	return nil
}

// openDiff opens the diff file of a tar-split file entry and checks its
// size.
func (t *LayerTar) openDiff(e *tsstorage.Entry) (*os.File, error) {
	if len(e.Payload) != 8 {
		return nil, errors.New("tar-split carries no CRC64 for its body")
	}
	f, err := t.open(e.GetName())
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() != e.Size {
		f.Close()
		return nil, fmt.Errorf("diff file %s has %d bytes, tar-split says %d", f.Name(), st.Size(), e.Size)
	}
	return f, nil
}

// member prefixes an error about the current body with its member name,
// unless the caller of NextPrepared names it.
func (t *LayerTar) member() string {
	if t.asked {
		return ""
	}
	return fmt.Sprintf("member %q: ", t.name)
}

func (t *LayerTar) readBody(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if left := t.size - t.off; int64(len(p)) > left {
		p = p[:left]
	}
	var n int
	var err error
	if t.mem != nil {
		n = copy(p, t.mem[t.off:])
	} else {
		n, err = t.src.ReadAt(p, t.off)
	}
	t.off += int64(n)
	if t.verified {
		if t.off == t.size {
			t.closeBody()
			return n, nil
		}
	} else {
		t.crc.Write(p[:n])
	}
	if t.off == t.size {
		var got [8]byte
		binary.BigEndian.PutUint64(got[:], t.crc.Sum64())
		if !bytes.Equal(got[:], t.want) {
			return n, t.fail("%sfile %s does not match the CRC64 tar-split recorded (changed after the layer was stored?)", t.member(), t.diffFile.Name())
		}
		t.closeBody()
		return n, nil
	}
	if err == io.EOF || n == 0 && err == nil {
		return n, t.fail("%sfile %s shrank to %d bytes while being read", t.member(), t.src.Name(), t.off)
	}
	if err != nil {
		return n, t.fail("%s%v", t.member(), err)
	}
	return n, nil
}

// closeBody ends the current body; a prefetched one nobody took with
// NextPrepared is dropped.
func (t *LayerTar) closeBody() {
	if t.diffFile != nil {
		t.diffFile.Close()
	}
	if it := t.cur; it != nil {
		t.cur = nil
		it.release()
	}
	t.inBody, t.diffFile, t.src, t.mem, t.verified = false, nil, nil, nil, false
}

// NextPrepared is called right after the header of a member whose body
// was prefetched (Prefetch; its size is over the minimum): path is the
// member's clean absolute path and size its header's size. It returns the
// token BodyPrep.Start gave for the body, once the body has been read
// into its sink, matched its CRC64 and went through BodyPrep.Verified;
// the body's bytes are then read through Read, from the file Start
// returned.
func (t *LayerTar) NextPrepared(memberPath string, size int64) (any, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.pre == nil {
		return nil, t.fail("no bodies are prefetched")
	}
	if len(t.seg) > 0 || t.inBody {
		return nil, t.fail("tar-split is out of step with the tar (%d header bytes left)", len(t.seg))
	}
	it, err := t.nextItem()
	if err != nil {
		return nil, t.fail("tar-split ends before its body: %v", err)
	}
	e := it.e
	if e.Type != tsstorage.FileType {
		return nil, t.fail("tar-split has no file entry for it")
	}
	if got := "/" + strings.TrimPrefix(path.Clean("/"+e.GetName()), "/"); got != memberPath {
		t.dropItem(it)
		return nil, t.fail("tar-split names %q here", e.GetName())
	}
	if e.Size != size {
		t.dropItem(it)
		return nil, t.fail("tar-split says %d bytes, its tar header %d", e.Size, size)
	}
	if it.done == nil {
		return nil, t.fail("its body of %d bytes was not prefetched", size)
	}
	if err := t.startBody(it); err != nil {
		return nil, t.fail("%v", err)
	}
	t.asked = true
	return it.token, nil
}

// dropItem waits for an item's prefetch and drops what it prepared.
func (t *LayerTar) dropItem(it *item) {
	if it.done == nil {
		return
	}
	<-it.done
	it.release()
}

// open finds a member's file: in the layer's diff directory or, for
// overlay metacopy stubs (metadata only, the data is below), further down.
// Only regular files inside the store's overlay directory are accepted,
// whatever symlinks the getter followed.
//
// A member of this layer's tar must be in this layer's directory: the
// driver's getter also looks in the layers below, which is right only
// past a metacopy stub, so a file found below without one is missing.
func (t *LayerTar) open(name string) (*os.File, error) {
	if f, ok, err := t.openOwn(name); ok || err != nil {
		return f, err
	}
	own := filepath.Join(t.prefix, t.layer.ID, "diff") + "/"
	for i, g := range t.getters {
		rc, err := g.Get(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("its file is missing from the layer's diff directory %s", own)
			}
			return nil, err
		}
		f, ok := rc.(*os.File)
		if !ok {
			rc.Close()
			return nil, errors.New("the storage driver does not hand out files")
		}
		real, err := t.checkFile(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if i == 0 && !strings.HasPrefix(real, own) {
			f.Close()
			return nil, fmt.Errorf("its file is missing from the layer's diff directory %s (a layer below has one)", own)
		}
		if isMetacopy(f) {
			f.Close()
			continue
		}
		return f, nil
	}
	return nil, fmt.Errorf("%s is an overlay metacopy stub with no data below it", name)
}

// openOwn is open's common case, in fewer system calls: the name is
// resolved beneath the layer's own diff directory (symlinks inside it are
// followed, none may lead out, which the driver's getter would allow and
// open then refuse), and the file must be a regular file that is not a
// metacopy stub. ok is false where open must look further: the diff
// directory is not at hand, or the file is a stub.
func (t *LayerTar) openOwn(name string) (f *os.File, ok bool, err error) {
	if t.diffDir < 0 {
		return nil, false, nil
	}
	rel := strings.TrimLeft(path.Clean("/"+name), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(t.diffDir, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	own := filepath.Join(t.prefix, t.layer.ID, "diff")
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return nil, true, fmt.Errorf("its file is missing from the layer's diff directory %s/", own)
	case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP):
		return nil, true, fmt.Errorf("%s resolves outside the layer's diff directory", filepath.Join(own, rel))
	case errors.Is(err, unix.ENOSYS):
		// No openat2 (Linux < 5.6): the driver's getter does it all. The
		// descriptor stays: prefetch workers share it.
		return nil, false, nil
	case err != nil:
		return nil, true, &os.PathError{Op: "openat2", Path: filepath.Join(own, rel), Err: err}
	}
	f = os.NewFile(uintptr(fd), filepath.Join(own, rel))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, true, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, true, fmt.Errorf("%s is not a regular file", f.Name())
	}
	if isMetacopy(f) {
		f.Close()
		return nil, false, nil
	}
	return f, true, nil
}

// checkFile accepts a regular file inside the store's overlay directory
// and returns the path it really has.
func (t *LayerTar) checkFile(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", f.Name())
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(real, t.prefix) {
		return "", fmt.Errorf("%s resolves to %s, outside the store", f.Name(), real)
	}
	return real, nil
}

func isMetacopy(f *os.File) bool {
	// Most files carry no extended attribute: one listing answers.
	if n, err := unix.Flistxattr(int(f.Fd()), nil); err == nil && n == 0 {
		return false
	}
	for _, name := range []string{"trusted.overlay.metacopy", "user.overlay.metacopy"} {
		if _, err := unix.Fgetxattr(int(f.Fd()), name, nil); err == nil {
			return true
		}
	}
	return false
}
