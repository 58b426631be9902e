package ostree

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ObjectType names the kinds of loose object this package writes; the
// value is the file extension.
type ObjectType string

const (
	ObjectFile    ObjectType = "file"
	ObjectDirTree ObjectType = "dirtree"
	ObjectDirMeta ObjectType = "dirmeta"
	ObjectCommit  ObjectType = "commit"
)

// bareUserMetaXattr holds uid, gid, mode and xattrs of file objects in
// bare-user repos, where the inode itself belongs to the writer.
const bareUserMetaXattr = "user.ostreemeta"

// ObjectPath is the path of a loose object relative to the repository.
func ObjectPath(checksum string, typ ObjectType) string {
	return "objects/" + checksum[:2] + "/" + checksum[2:] + "." + string(typ)
}

// HasObject reports whether the object is present (stored or pending).
// It does not check what is stored: see CheckFileObject.
func (r *Repo) HasObject(checksum string, typ ObjectType) (bool, error) {
	if !ValidChecksum(checksum) {
		return false, fmt.Errorf("invalid checksum %q", checksum)
	}
	if r.isPending(ObjectPath(checksum, typ)) {
		return true, nil
	}
	var st unix.Stat_t
	err := unix.Fstatat(r.dirFD, ObjectPath(checksum, typ), &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, fmt.Errorf("%s/%s: %w", r.path, ObjectPath(checksum, typ), err)
}

// checkFileMetaForMode refuses metadata the repository cannot represent:
// a bare-user-only repo records neither owner nor xattrs nor special
// bits, and fsck would recompute the checksum as if they were absent.
func (r *Repo) checkFileMetaForMode(meta FileMeta, what string) error {
	if err := meta.validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if r.mode == ModeBareUserOnly {
		if meta.UID != 0 || meta.GID != 0 || len(meta.Xattrs) != 0 {
			return fmt.Errorf("%s: bare-user-only repo %s cannot store uid %d gid %d or xattrs", what, r.path, meta.UID, meta.GID)
		}
		if meta.Mode&^0o775 != 0 {
			return fmt.Errorf("%s: bare-user-only repo %s cannot store mode %#o (bits outside 0775)", what, r.path, meta.Mode)
		}
	}
	return nil
}

// WriteFileObject stores a regular file object. fill puts the content into
// tmp (an empty file open read-write in repo/tmp, e.g. by FICLONE from a
// composefs object, or by copying); tmp's offset does not matter. The
// checksum is then computed over the bytes actually in tmp, in one read.
//
// If knownChecksum is not empty, it is what the caller believes the object
// is, and knownSize its content's size: when that object is already
// stored with that size, fill is not called at all (it was computed from
// these bytes earlier, so the object is the same), and otherwise a
// different computed checksum is an error. Pass "" to always verify.
// created is false when an intact object was already present. A stored
// object of the same checksum that is damaged (wrong type or size, as a
// power cut can leave it) is replaced.
//
// The object is named at the next Flush (SetRef flushes), once durable.
func (r *Repo) WriteFileObject(meta FileMeta, fill func(tmp *os.File) error, knownChecksum string, knownSize int64) (checksum string, created bool, err error) {
	return r.WriteFileObjectWith(meta, fill, FileObjectOptions{KnownChecksum: knownChecksum, KnownSize: knownSize})
}

// FileObjectOptions are WriteFileObjectWith's optional inputs.
type FileObjectOptions struct {
	// KnownChecksum and KnownSize: see WriteFileObject.
	KnownChecksum string
	KnownSize     int64
	// Content, if set, receives the object's bytes during the one read
	// that computes the checksum, so that the caller can compute another
	// digest of exactly the bytes stored (the fs-verity digest that ties
	// them to a composefs object) without reading them again.
	Content io.Writer
	// Verify, if set, runs after that read and before the object is
	// queued; an error from it discards the object and is returned.
	Verify func() error
	// HashFrom, if set, is read for the checksum instead of the filled
	// file: a file fill cloned whole and whose reads the kernel checks
	// against an fs-verity measurement, so that corruption of the shared
	// extents fails the read instead of giving an object named after
	// the damaged bytes.
	HashFrom *os.File
	// Recorded, if set, is the checksum of these bytes with this metadata
	// as a trusted writer computed it from the bytes earlier (a content
	// record of the composefs object fill clones): the object is named by
	// it and its bytes are not read. Content, Verify and HashFrom are then
	// not used, and KnownSize must be the content's size.
	Recorded string
}

// readBackBuffer is the read size for hashing a filled object: large
// enough that a multi-GiB tree costs few read calls.
const readBackBuffer = 1 << 20

var readBackBuffers = sync.Pool{New: func() any { b := make([]byte, readBackBuffer); return &b }}

// WriteFileObjectWith is WriteFileObject with FileObjectOptions.
func (r *Repo) WriteFileObjectWith(meta FileMeta, fill func(tmp *os.File) error, opts FileObjectOptions) (checksum string, created bool, err error) {
	if err := r.checkFileMetaForMode(meta, "file object"); err != nil {
		return "", false, err
	}
	knownChecksum := opts.KnownChecksum
	// checked is the object looked up before filling and what its check
	// said: queueFileObject need not look it up again moments later (a
	// writer storing it meanwhile is caught when the object is named).
	var checked string
	var checkedErr error
	if knownChecksum != "" {
		if checkedErr = r.CheckFileObject(knownChecksum, opts.KnownSize); checkedErr == nil {
			return knownChecksum, false, nil
		}
		checked = knownChecksum
	} else if opts.Recorded != "" {
		// Known before anything is cloned: an object stored already (an
		// upgrade shares most of them) costs no temporary file.
		if checkedErr = r.CheckFileObject(opts.Recorded, opts.KnownSize); checkedErr == nil {
			return opts.Recorded, false, nil
		}
		checked = opts.Recorded
	}
	priorCheck := func(checksum string) error {
		if checksum == checked {
			return checkedErr
		}
		return nil
	}
	if err := r.beginWrite(); err != nil {
		return "", false, err
	}
	header, err := fileHeader(meta, "", false)
	if err != nil {
		return "", false, fmt.Errorf("file object: %w", err)
	}
	// The object's directory, when its name is known now (an invalid
	// one fails below, after the fill, as before).
	name := knownChecksum
	if name == "" {
		name = opts.Recorded
	}
	if !ValidChecksum(name) {
		name = ""
	}
	tmp, err := r.newTmpObject(r.createPerm(meta.Mode), name)
	if err != nil {
		return "", false, err
	}
	queued := false
	defer func() {
		if !queued {
			tmp.discard()
		}
	}()
	if err := fill(tmp.f); err != nil {
		return "", false, fmt.Errorf("filling file object: %w", err)
	}
	if opts.Recorded != "" {
		if !ValidChecksum(opts.Recorded) {
			return "", false, fmt.Errorf("file object: invalid recorded checksum %q", opts.Recorded)
		}
		if knownChecksum != "" && opts.Recorded != knownChecksum {
			return "", false, fmt.Errorf("file object content is recorded as %s, caller expected %s", opts.Recorded, knownChecksum)
		}
		return r.queueFileObject(tmp, &queued, meta, opts.Recorded, opts.KnownSize, priorCheck(opts.Recorded))
	}
	h := newContentHash(header)
	var sink io.Writer = h
	if opts.Content != nil {
		sink = io.MultiWriter(h, opts.Content)
	}
	buf := readBackBuffers.Get().(*[]byte)
	hashFrom := tmp.f
	if opts.HashFrom != nil {
		hashFrom = opts.HashFrom
	}
	size, err := io.CopyBuffer(sink, io.NewSectionReader(hashFrom, 0, 1<<62), *buf)
	readBackBuffers.Put(buf)
	if err != nil {
		return "", false, fmt.Errorf("reading back file object: %w", err)
	}
	checksum = hex.EncodeToString(h.Sum(nil))
	if knownChecksum != "" && checksum != knownChecksum {
		return "", false, fmt.Errorf("file object content has checksum %s, caller expected %s", checksum, knownChecksum)
	}
	if opts.Verify != nil {
		if err := opts.Verify(); err != nil {
			return "", false, err
		}
	}
	return r.queueFileObject(tmp, &queued, meta, checksum, size, priorCheck(checksum))
}

// queueFileObject gives a filled file object its metadata and queues it
// under checksum, unless an intact one is pending or stored already.
// prior is the error of the stored object's check made just before the
// object was filled, or nil when none was made: the object is then
// looked up here.
func (r *Repo) queueFileObject(tmp *tmpObject, queued *bool, meta FileMeta, checksum string, size int64, prior error) (string, bool, error) {
	path := ObjectPath(checksum, ObjectFile)
	if r.isPending(path) {
		return checksum, false, nil
	}
	check := func() error { return r.checkStoredFile(checksum, size, false) }
	cerr := prior
	if cerr == nil {
		if cerr = check(); cerr == nil {
			return checksum, false, nil
		}
	}
	if err := r.applyFileMeta(tmp.f, meta, sIFREG|meta.Mode); err != nil {
		return "", false, fmt.Errorf("file object %s: %w", checksum, err)
	}
	*queued = true
	created, err := r.queue(tmp, path, check, !errors.Is(cerr, fs.ErrNotExist))
	return checksum, created, err
}

// WriteFileObjectFrom stores a regular file object whose content is read
// from content (for inline data and byte copies).
func (r *Repo) WriteFileObjectFrom(meta FileMeta, content io.Reader) (checksum string, created bool, err error) {
	return r.WriteFileObject(meta, func(tmp *os.File) error {
		_, err := io.Copy(tmp, content)
		return err
	}, "", 0)
}

// createPerm is the permission a file object's temporary file is created
// with: its own bits where the repository mode stores them in the inode
// (bare, bare-user-only), so that applyFileMeta rarely has to change them.
// Never setuid, setgid or sticky bits: a file being filled must not carry
// them (applyFileMeta sets them at the end).
func (r *Repo) createPerm(mode uint32) uint32 {
	if r.mode == ModeBareUser {
		return 0o644
	}
	return mode & 0o777
}

// applyFileMeta gives a temp file object the ownership, mode and xattrs the
// repository mode calls for; fullMode includes the file type.
func (r *Repo) applyFileMeta(f *os.File, meta FileMeta, fullMode uint32) error {
	xs, err := canonicalXattrs(meta.Xattrs)
	if err != nil {
		return err
	}
	switch r.mode {
	case ModeBare:
		if err := setOwnerMode(f, meta.UID, meta.GID, meta.Mode, true); err != nil {
			return err
		}
		for _, x := range xs {
			if err := unix.Fsetxattr(int(f.Fd()), x.Name, x.Value, 0); err != nil {
				return fmt.Errorf("fsetxattr %s: %w", x.Name, err)
			}
		}
	case ModeBareUser:
		blob, err := ostreeMeta(meta.UID, meta.GID, fullMode, meta.Xattrs)
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(int(f.Fd()), bareUserMetaXattr, blob, 0); err != nil {
			return fmt.Errorf("fsetxattr %s: %w", bareUserMetaXattr, err)
		}
		// The real mode must stay harmless (no setuid on a writer-owned
		// file) yet readable by the writer, who checks out by hardlink.
		perm := (fullMode & 0o775) | 0o400
		if fullMode&sIFMT == sIFLNK {
			perm = 0o644
		}
		if err := unix.Fchmod(int(f.Fd()), perm); err != nil {
			return fmt.Errorf("fchmod %#o: %w", perm, err)
		}
	case ModeBareUserOnly:
		if err := setOwnerMode(f, 0, 0, meta.Mode, false); err != nil {
			return err
		}
	}
	return setMtimeZero(f)
}

// WriteSymlinkObject stores a symlink object. Its mode is always 0777
// whatever meta.Mode says (see FileMeta).
func (r *Repo) WriteSymlinkObject(meta FileMeta, target string) (checksum string, created bool, err error) {
	what := fmt.Sprintf("symlink object -> %q", target)
	meta.Mode = 0 // a symlink's permission bits are not the caller's to choose
	if err := r.checkFileMetaForMode(meta, what); err != nil {
		return "", false, err
	}
	meta.Mode = 0o777
	if !utf8.ValidString(target) || strings.IndexByte(target, 0) >= 0 || len(target) >= unix.PathMax {
		return "", false, fmt.Errorf("%s: target is not a valid UTF-8 path", what)
	}
	checksum, err = SymlinkChecksum(meta, target)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", what, err)
	}
	path := ObjectPath(checksum, ObjectFile)
	if r.isPending(path) {
		return checksum, false, nil
	}
	check := func() error { return r.checkStoredFile(checksum, int64(len(target)), true) }
	cerr := check()
	if cerr == nil {
		return checksum, false, nil
	}
	replace := !errors.Is(cerr, fs.ErrNotExist)
	if err := r.beginWrite(); err != nil {
		return "", false, err
	}
	if r.mode == ModeBareUser {
		// bare-user cannot own or label a real symlink, so the object is
		// a regular file holding the target and a NUL, described by
		// user.ostreemeta.
		tmp, err := r.newTmpObject(0o644, checksum)
		if err != nil {
			return "", false, err
		}
		if _, err := tmp.f.Write(append([]byte(target), 0)); err != nil {
			tmp.discard()
			return "", false, fmt.Errorf("%s: %w", what, err)
		}
		if err := r.applyFileMeta(tmp.f, meta, sIFLNK|0o777); err != nil {
			tmp.discard()
			return "", false, fmt.Errorf("%s: %w", what, err)
		}
		created, err = r.queue(tmp, path, check, replace)
		return checksum, created, err
	}

	tmpFD, err := r.writeDirs()
	if err != nil {
		return "", false, err
	}
	tmp := &tmpObject{tmpFD: tmpFD, named: "tmplink-" + randomSuffix()}
	if err := unix.Symlinkat(target, tmpFD, tmp.named); err != nil {
		return "", false, fmt.Errorf("%s: %w", what, err)
	}
	if r.mode == ModeBare {
		if err := unix.Fchownat(tmpFD, tmp.named, int(meta.UID), int(meta.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			tmp.discard()
			return "", false, fmt.Errorf("%s: lchown: %w", what, err)
		}
		xs, err := canonicalXattrs(meta.Xattrs)
		if err != nil {
			tmp.discard()
			return "", false, err
		}
		// Through the descriptor of tmp/, never a path a planted symlink
		// could redirect.
		procPath := "/proc/self/fd/" + strconv.Itoa(tmpFD) + "/" + tmp.named
		for _, x := range xs {
			// Linux refuses user.* xattrs on symlinks; such a tree cannot
			// be stored in a bare repo at all.
			if err := unix.Lsetxattr(procPath, x.Name, x.Value, 0); err != nil {
				tmp.discard()
				return "", false, fmt.Errorf("%s: lsetxattr %s: %w", what, x.Name, err)
			}
		}
	}
	created, err = r.queue(tmp, path, check, replace)
	return checksum, created, err
}

// writeMetadataObject stores a dirtree, dirmeta or commit: mode 0644, named
// by the sha256 of exactly these bytes. A stored one is compared with
// them and replaced if it differs (a power cut left it empty or short).
func (r *Repo) writeMetadataObject(typ ObjectType, data []byte) (string, error) {
	checksum := MetadataChecksum(data)
	path := ObjectPath(checksum, typ)
	if r.isPending(path) {
		return checksum, nil
	}
	check := func() error { return r.checkStoredBytes(path, data) }
	cerr := check()
	if cerr == nil {
		return checksum, nil
	}
	if err := r.beginWrite(); err != nil {
		return "", err
	}
	tmp, err := r.newTmpObject(0o644, checksum)
	if err != nil {
		return "", err
	}
	if _, err := tmp.f.Write(data); err != nil {
		tmp.discard()
		return "", fmt.Errorf("%s.%s: %w", checksum, typ, err)
	}
	if err := setOwnerMode(tmp.f, 0, 0, 0o644, false); err != nil {
		tmp.discard()
		return "", fmt.Errorf("%s.%s: %w", checksum, typ, err)
	}
	if _, err := r.queue(tmp, path, check, !errors.Is(cerr, fs.ErrNotExist)); err != nil {
		return "", err
	}
	return checksum, nil
}

// WriteDirMeta stores a .dirmeta object and returns its checksum.
func (r *Repo) WriteDirMeta(m DirMeta) (string, error) {
	b, err := m.Bytes()
	if err != nil {
		return "", err
	}
	return r.writeMetadataObject(ObjectDirMeta, b)
}

// WriteDirTree stores a .dirtree object (sorted for the caller) and
// returns its checksum.
func (r *Repo) WriteDirTree(t DirTree) (string, error) {
	b, err := t.Bytes()
	if err != nil {
		return "", err
	}
	return r.writeMetadataObject(ObjectDirTree, b)
}

// ReadMetadataObject returns the bytes of a dirtree, dirmeta or commit
// after checking that they still hash to their name.
func (r *Repo) ReadMetadataObject(checksum string, typ ObjectType) ([]byte, error) {
	if !ValidChecksum(checksum) {
		return nil, fmt.Errorf("invalid checksum %q", checksum)
	}
	p := filepath.Join(r.path, ObjectPath(checksum, typ))
	data, err := r.readObject(ObjectPath(checksum, typ))
	if err != nil {
		return nil, err
	}
	if got := MetadataChecksum(data); got != checksum {
		return nil, fmt.Errorf("%s: corrupted object, content hashes to %s", p, got)
	}
	return data, nil
}

// ReadDirTree loads and parses a .dirtree object.
func (r *Repo) ReadDirTree(checksum string) (DirTree, error) {
	b, err := r.ReadMetadataObject(checksum, ObjectDirTree)
	if err != nil {
		return DirTree{}, err
	}
	return ParseDirTree(b)
}

// ReadDirMeta loads and parses a .dirmeta object.
func (r *Repo) ReadDirMeta(checksum string) (DirMeta, error) {
	b, err := r.ReadMetadataObject(checksum, ObjectDirMeta)
	if err != nil {
		return DirMeta{}, err
	}
	return ParseDirMeta(b)
}
