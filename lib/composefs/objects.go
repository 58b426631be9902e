package composefs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/beneath"
	"github.com/cfs-project/cfs/lib/crc64iso"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/reflink"
)

// Durability. An object gets its name only after its bytes are on disk
// (atomicfile.Batch says why and how): objects are written unnamed
// (O_TMPFILE), kept open as pending, and linked into objects/XX after one
// syncfs per batch. Stream, image and tag names are made after a Flush,
// so they too never outlive what they name.

// pendingObject is a complete object waiting for the next Flush.
type pendingObject struct {
	t       *tmpFile
	id      []byte
	size    int64
	replace bool // the object under this name is known to be wrong
	// trim says the file's preallocation is to be given back once it is
	// durable (atomicfile.TrimPreallocation), through t's writable
	// descriptor.
	trim bool
}

// Pending objects. A background flush (FlushInBackground) starts once
// backgroundFlushAt objects are pending and takes all of them; writers
// go on meanwhile and wait only when pendingLimit are pending (each holds
// a descriptor), so that one batch's syncfs, which writes back what the
// workers wrote since the last one, rarely stops them. Without
// background flushing a batch is flushed when it reaches pendingLimit.
const (
	pendingLimit      = 4096
	backgroundFlushAt = 512
)

// writebackFrom is the size from which a written object's writeback
// starts as soon as it is complete (atomicfile.StartWriteback), so that a
// batch's syncfs, which the writers may have to wait for, finds little
// left to write. Smaller objects are left to the syncfs, which writes
// them together: in a /usr-shaped image the objects of 64 KiB and more
// are 4% of the files and 84% of the bytes.
const writebackFrom = 64 << 10

// ObjectName is the path of an object below objects/: "XX/rest".
func ObjectName(id []byte) string {
	h := hex.EncodeToString(id)
	return h[:2] + "/" + h[2:]
}

// ObjectPath is the absolute path of the object id. A pending object
// (written, not yet flushed) has no file there yet; OpenObject opens it.
func (r *Repository) ObjectPath(id []byte) string {
	return filepath.Join(r.path, "objects", ObjectName(id))
}

// HasObject reports whether the object exists or is pending.
func (r *Repository) HasObject(id []byte) bool {
	if r.isPending(id) {
		return true
	}
	_, err := os.Lstat(r.ObjectPath(id))
	return err == nil
}

func (r *Repository) isPending(id []byte) bool {
	return r.pending.Pending(string(id), nil)
}

// recordPending reports whether id is pending and, if so and rec is not
// nil, adds rec to its records: the bytes rec was computed from hash to
// the same id as the ones this process wrote there.
func (r *Repository) recordPending(id []byte, rec *ObjectRecords) bool {
	if rec == nil {
		return r.isPending(id)
	}
	return r.pending.Pending(string(id), func(p *pendingObject) { r.addRecord(p.t.File, *rec) })
}

// OpenObject opens an object for reading, pending or named.
func (r *Repository) OpenObject(id []byte) (f *os.File, err error) {
	if r.pending.Pending(string(id), func(p *pendingObject) { f, err = p.t.open() }) {
		return f, err
	}
	return os.Open(r.ObjectPath(id))
}

// CheckObject checks, cheaply, that the stored object id is what it
// should be: a regular file (not a symlink) of the given size and, where
// the kernel measured it with fs-verity, of that digest. A crash can
// leave a name whose bytes were lost (a 0-byte or short file): such an
// object must be replaced, never reused. The error wraps fs.ErrNotExist
// for a missing object.
func (r *Repository) CheckObject(id []byte, size int64) error {
	if r.isPending(id) {
		return nil
	}
	return r.checkStored(id, size)
}

// checkStored is CheckObject of the file under the object's name, pending
// or not.
func (r *Repository) checkStored(id []byte, size int64) error {
	var st unix.Stat_t
	if err := r.statObject(id, &st); err != nil {
		return fmt.Errorf("object %x: %w", id, &os.PathError{Op: "lstat", Path: r.ObjectPath(id), Err: err})
	}
	p := r.ObjectPath(id)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("object %s is not a regular file", p)
	}
	if st.Size != size {
		return fmt.Errorf("object %s is %d bytes, its stream says %d", p, st.Size, size)
	}
	if r.verityOn.Load() || r.secure {
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, got, err := fsverity.Measure(f)
		if err == nil && !bytes.Equal(got, id) {
			return fmt.Errorf("object %s has fs-verity digest %x", p, got)
		}
		if err != nil && r.secure {
			return fmt.Errorf("object %s: %w", p, err)
		}
	}
	return nil
}

// statObject is lstat of the object's name, relative to objects/XX when
// that directory is open already: a pull checks every object it writes,
// and a walk of the whole path each time cost a quarter of the time of
// making the object.
func (r *Repository) statObject(id []byte, st *unix.Stat_t) error {
	r.mu.Lock()
	fd, ok := r.subdirs[id[0]]
	r.mu.Unlock()
	if ok {
		return unix.Fstatat(fd, hex.EncodeToString(id[1:]), st, unix.AT_SYMLINK_NOFOLLOW)
	}
	return unix.Lstat(r.ObjectPath(id), st)
}

// checkObjectBytes checks an existing object against the bytes it should
// hold, for the small objects a caller has in memory (streams, images,
// manifests, configs), where comparing is cheap.
func (r *Repository) checkObjectBytes(id, data []byte) error {
	if err := r.CheckObject(id, int64(len(data))); err != nil {
		return err
	}
	if r.isPending(id) {
		return nil
	}
	got, err := os.ReadFile(r.ObjectPath(id))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("object %s does not hold the bytes its name says", r.ObjectPath(id))
	}
	return nil
}

// enableVerity turns on fs-verity where the filesystem supports it and,
// when it did, checks the kernel's digest against want. It reports whether
// verity is now on. A repository in secure mode (required) refuses
// objects the kernel cannot protect.
func enableVerity(f *os.File, alg fsverity.Algorithm, want []byte, required bool) (bool, error) {
	err := fsverity.Enable(f, alg)
	if errors.Is(err, fsverity.ErrUnavailable) {
		if required {
			return false, fmt.Errorf("%s: the repository requires fs-verity, which this filesystem does not support: %w", f.Name(), err)
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if want == nil {
		return true, nil
	}
	_, got, err := fsverity.Measure(f)
	if err != nil {
		return true, err
	}
	if !bytes.Equal(got, want) {
		return true, fmt.Errorf("%s: kernel fs-verity digest %x differs from the computed %x", f.Name(), got, want)
	}
	return true, nil
}

// finishObject queues a complete temporary file to be named id at the
// next Flush. An object already pending, or already stored and intact,
// is left as it is and reported as not created; replace says the stored
// one is known to be wrong.
func (r *Repository) finishObject(t *tmpFile, id []byte, size int64, replace bool) (created bool, err error) {
	return r.finishRecorded(t, id, size, replace, nil)
}

// finishRecorded is finishObject that also keeps rec, computed from t's
// bytes, with the object when this process wrote it (see Record).
func (r *Repository) finishRecorded(t *tmpFile, id []byte, size int64, replace bool, rec *ObjectRecords) (created bool, err error) {
	queued := false
	defer func() {
		if !queued {
			t.discard()
		}
	}()
	if r.recordPending(id, rec) {
		return false, nil
	}
	if !replace && r.mayBeStored(id) && r.checkStored(id, size) == nil {
		return false, nil
	}
	trim := false
	if r.verityOff.Load() {
		// The filesystem has no fs-verity (an earlier object found out):
		// the file needs no read-only descriptor for the ioctl, and the
		// writable one, closed once the file is named, frees what XFS
		// reserved past its end anyway; trimmed all the same, but only
		// once the batch's syncfs has written the file back (nameObject):
		// XFS writes back and waits for a file truncated before its data
		// reached the disk, which made every writer wait for the disk.
		trim = t.written
	} else {
		if err := t.reopenReadOnly(size); err != nil {
			return false, err
		}
		on, err := enableVerity(t.File, r.alg, id, r.secure)
		if err != nil {
			return false, err
		}
		if on {
			r.verityOn.Store(true)
		} else {
			r.verityOff.Store(true)
		}
	}
	if rec != nil {
		r.setRecords(t.File, *rec)
	}
	queued, full := r.pending.Add(string(id), &pendingObject{t: t, id: id, size: size, replace: replace, trim: trim})
	if !queued {
		r.recordPending(id, rec)
		return false, nil
	}
	if r.async.Load() > 0 && !full {
		if r.pending.Len() >= min(backgroundFlushAt, r.pending.Limit()/2) && r.flushing.CompareAndSwap(false, true) {
			r.bg.Add(1)
			go func() {
				defer r.bg.Done()
				defer r.flushing.Store(false)
				if err := r.flushPending(); err != nil {
					r.bgMu.Lock()
					if r.bgErr == nil {
						r.bgErr = err
					}
					r.bgMu.Unlock()
				}
			}()
		}
		return true, r.backgroundErr()
	}
	if full {
		if err := r.Flush(); err != nil {
			return true, err
		}
	}
	return true, nil
}

// FlushInBackground lets pending objects be made durable and named on
// another goroutine, from backgroundFlushAt pending on, while the caller
// goes on writing objects: the syncfs of one batch then overlaps the
// writing of the next instead of stopping it. Nothing else changes: an
// object is named only after the syncfs that made it durable, and Flush
// (which every stream, image and tag writer calls first) waits for a
// running background flush and names the rest. A full batch
// (pendingLimit) is still flushed by the writer that filled it, so no
// more objects are open than that.
// done turns it off again and waits until no background flush runs: a
// caller that returns after done has nothing writing into the
// repository behind its back.
func (r *Repository) FlushInBackground() (done func()) {
	r.async.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			r.async.Add(-1)
			r.bg.Wait()
		})
	}
}

// backgroundErr is the error of a background flush, if one failed.
func (r *Repository) backgroundErr() error {
	r.bgMu.Lock()
	defer r.bgMu.Unlock()
	return r.bgErr
}

// Flush makes every pending object durable and then names it: one syncfs
// for the whole batch, then a link per object. An object whose name is
// taken by a wrong file (see CheckObject) replaces it atomically. Stream,
// image and tag writers call it before they name anything.
func (r *Repository) Flush() error {
	if err := r.flushPending(); err != nil {
		return err
	}
	return r.backgroundErr()
}

func (r *Repository) flushPending() error {
	return r.pending.Flush(r.Sync, func(p *pendingObject) error {
		if err := r.nameObject(p); err != nil {
			return fmt.Errorf("storing object %x: %w", p.id, err)
		}
		return nil
	}, func(p *pendingObject) { p.t.discard() })
}

func (r *Repository) nameObject(p *pendingObject) error {
	dirfd, err := r.objectDir(p.id[0])
	if err != nil {
		return err
	}
	if p.trim {
		if err := atomicfile.TrimPreallocation(p.t.File, p.size); err != nil {
			return err
		}
	}
	rest := hex.EncodeToString(p.id[1:])
	if !p.replace {
		err := p.t.link(dirfd, rest)
		if err == nil {
			r.noteNamed(p.id)
		}
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
		// Another writer named it meanwhile, or a wrong file is there.
		if r.checkStored(p.id, p.size) == nil {
			return nil
		}
	}
	if err := p.t.replace(dirfd, rest); err != nil {
		return err
	}
	r.noteNamed(p.id)
	return nil
}

// storedChecks counts the lookups of an existing object before one is
// stored, so that a test can tell which were skipped.
var storedChecks atomic.Int64

// mayBeStored says whether an object id may already have a file under
// its name, for finishRecorded's lookup (an lstat per object written,
// most of them missing in a new repository). In an objects/XX that this
// handle created, only what it named itself can be there, or what
// another writer names at the same time, which the link's EEXIST finds
// as before (nameObject); only the object's "created" would then say
// true for an object another writer stored first, as it could already
// when both wrote at once. The batch leaves an object pending until
// after noteNamed, so a writer always finds one or the other.
func (r *Repository) mayBeStored(id []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.made[id[0]] {
		storedChecks.Add(1)
		return true
	}
	_, ok := r.named[binary.LittleEndian.Uint64(id[1:9])]
	if ok {
		storedChecks.Add(1)
	}
	return ok
}

// noteNamed remembers an object named in a directory this handle made.
func (r *Repository) noteNamed(id []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.made[id[0]] {
		if r.named == nil {
			r.named = map[uint64]struct{}{}
		}
		r.named[binary.LittleEndian.Uint64(id[1:9])] = struct{}{}
	}
}

// objectDir returns objects/XX, created if needed, never through a
// symlink planted in the repository.
func (r *Repository) objectDir(b byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fd, ok := r.subdirs[b]; ok {
		return fd, nil
	}
	if r.objects < 0 {
		return -1, r.objectsErr
	}
	name := hex.EncodeToString([]byte{b})
	// Made here, or already there (then opened, never through a symlink).
	made := unix.Mkdirat(r.objects, name, 0o755) == nil
	fd, err := beneath.MkdirAll(r.objects, name, 0o755)
	if err != nil {
		return -1, fmt.Errorf("%s/objects/%w", r.path, err)
	}
	r.subdirs[b] = fd
	r.made[b] = made
	return fd, nil
}

func (r *Repository) newTemp() (*tmpFile, error) {
	if err := r.checkWritable(); err != nil {
		return nil, err
	}
	if r.objects < 0 {
		return nil, r.objectsErr
	}
	// The first temporary file of this handle is chmodded regardless
	// (worldReadable).
	return createTemp(r.objects, filepath.Join(r.path, "objects"), !r.firstTemp.CompareAndSwap(false, true))
}

// EnsureObject stores data as an object and returns its id. An existing
// object of that id is compared with data and replaced if it differs.
func (r *Repository) EnsureObject(data []byte) ([]byte, error) {
	id, err := fsverity.Digest(bytes.NewReader(data), r.alg)
	if err != nil {
		return nil, err
	}
	if r.isPending(id) {
		return id, nil
	}
	err = r.checkObjectBytes(id, data)
	if err == nil {
		return id, nil
	}
	replace := !errors.Is(err, fs.ErrNotExist)
	t, err := r.newTemp()
	if err != nil {
		return nil, err
	}
	t.written = true
	if _, err := t.Write(data); err != nil {
		t.discard()
		return nil, fmt.Errorf("storing object %x: %w", id, err)
	}
	if _, err := r.finishObject(t, id, int64(len(data)), replace); err != nil {
		return nil, fmt.Errorf("storing object %x: %w", id, err)
	}
	return id, nil
}

// WriteObject stores everything src yields as an object, hashing the
// bytes as they are written. It reports the id, the size, and whether the
// object is new. The object is pending until the next Flush.
func (r *Repository) WriteObject(src io.Reader) (id []byte, size int64, created bool, err error) {
	return r.WriteObjectWith(src, WriteOptions{})
}

// WriteObjectWith is WriteObject with WriteOptions.
func (r *Repository) WriteObjectWith(src io.Reader, opts WriteOptions) (id []byte, size int64, created bool, err error) {
	t, err := r.newTemp()
	if err != nil {
		return nil, 0, false, err
	}
	t.written = true
	// Pooled like the buffer below: a Hasher is 5 KiB and more.
	h := fsverity.Get(r.alg)
	defer fsverity.Put(h)
	// MultiWriter keeps io.Copy from using copy_file_range, which would
	// skip the hasher. The buffer is pooled: io.Copy would allocate 32
	// KiB per object, 3 GiB of garbage for an image of 100k files.
	rw := newRecordWriter(opts)
	sinks := append([]io.Writer{t.File, h}, rw.sinks...)
	buf := copyBuffers.Get().(*[copyBufferSize]byte)
	size, err = io.CopyBuffer(io.MultiWriter(sinks...), src, buf[:])
	copyBuffers.Put(buf)
	if err != nil {
		t.discard()
		return nil, size, false, err
	}
	if size >= writebackFrom {
		atomicfile.StartWriteback(t.File)
	}
	id = h.Sum(nil)
	created, err = r.finishRecorded(t, id, size, false, rw.records())
	if err != nil {
		return nil, size, false, fmt.Errorf("storing object %x: %w", id, err)
	}
	return id, size, created, nil
}

// recordWriter computes the records WriteOptions ask for from the bytes
// written to its sinks.
type recordWriter struct {
	prefix []byte
	rh     hash.Hash        // nil without a record prefix
	crc    *crc64iso.Digest // nil without CRC64
	sinks  []io.Writer
}

func newRecordWriter(opts WriteOptions) *recordWriter {
	w := &recordWriter{}
	if opts.RecordPrefix != nil && len(opts.RecordPrefix) <= MaxRecordPrefix {
		w.prefix, w.rh = opts.RecordPrefix, NewRecordHash(opts.RecordPrefix)
		w.sinks = append(w.sinks, w.rh)
	}
	if opts.CRC64 {
		w.crc = crc64iso.New()
		w.sinks = append(w.sinks, w.crc)
	}
	return w
}

// records is what was asked for, of everything written; nil when nothing
// was.
func (w *recordWriter) records() *ObjectRecords {
	if w.rh == nil && w.crc == nil {
		return nil
	}
	rec := &ObjectRecords{}
	if w.rh != nil {
		rec.Content = []Record{{Prefix: w.prefix}}
		w.rh.Sum(rec.Content[0].Sum[:0])
	}
	if w.crc != nil {
		rec.CRC64, rec.HasCRC64 = w.crc.Sum64(), true
	}
	return rec
}

// Written is what WriteObjects says of one body: what WriteObjectWith
// returns for it.
type Written struct {
	ID      []byte
	Created bool
	Err     error
}

// WriteObjects stores bodies held whole in memory as WriteObjectWith
// would one after the other, body i with opts[i], and reports each in
// the same order. Their fs-verity digests are computed together
// (fsverity.DigestFiles), which for the small files most of an OS image
// is made of costs less than one at a time. One body's error does not
// stop the others.
func (r *Repository) WriteObjects(bodies [][]byte, opts []WriteOptions) []Written {
	ids := fsverity.DigestFiles(r.alg, bodies)
	out := make([]Written, len(bodies))
	for i, body := range bodies {
		created, err := r.writeDigested(body, ids[i], opts[i])
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i] = Written{ID: ids[i], Created: created}
	}
	return out
}

// writeDigested stores body, whose fs-verity digest this process
// computed as id.
func (r *Repository) writeDigested(body, id []byte, opts WriteOptions) (created bool, err error) {
	t, err := r.newTemp()
	if err != nil {
		return false, err
	}
	t.written = true
	if _, err := t.File.Write(body); err != nil {
		t.discard()
		return false, err
	}
	if len(body) >= writebackFrom {
		atomicfile.StartWriteback(t.File)
	}
	rw := newRecordWriter(opts)
	for _, s := range rw.sinks {
		s.Write(body)
	}
	created, err = r.finishRecorded(t, id, int64(len(body)), false, rw.records())
	if err != nil {
		return false, fmt.Errorf("storing object %x: %w", id, err)
	}
	return created, nil
}

// copyBufferSize is a multiple of the fs-verity block size, so that
// every full read is hashed in place.
const copyBufferSize = 128 << 10

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// ImportFile stores the content of the file at src as an object, sharing
// its extents by FICLONE under the given policy. The digest is computed
// over the bytes that landed in the repository, never trusted from the
// caller. The object is pending until the next Flush.
func (r *Repository) ImportFile(src string, policy reflink.Policy) (id []byte, size int64, how reflink.Result, created bool, err error) {
	if err := r.checkWritable(); err != nil {
		return nil, 0, 0, false, err
	}
	in, err := os.Open(src)
	if err != nil {
		return nil, 0, 0, false, err
	}
	defer in.Close()
	t, err := r.newTemp()
	if err != nil {
		return nil, 0, 0, false, err
	}
	how, err = reflink.CloneFile(t.File, in, policy)
	if err != nil {
		t.discard()
		return nil, 0, 0, false, err
	}
	if _, err := t.Seek(0, io.SeekStart); err != nil {
		t.discard()
		return nil, 0, how, false, err
	}
	h := fsverity.New(r.alg)
	size, err = io.Copy(h, t.File)
	if err != nil {
		t.discard()
		return nil, size, how, false, err
	}
	id = h.Sum(nil)
	created, err = r.finishObject(t, id, size, false)
	if err != nil {
		return nil, size, how, false, fmt.Errorf("storing object %x from %s: %w", id, src, err)
	}
	return id, size, how, created, nil
}
