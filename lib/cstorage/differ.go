package cstorage

import (
	stdtar "archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unsafe"

	securejoin "github.com/cyphar/filepath-securejoin"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"
	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/crc64iso"
	"github.com/cfs-project/cfs/lib/reflink"
)

// Chunk is a piece of a layer tar: inline bytes, or a file whose whole
// content is the next Size bytes of the tar (a body that can be cloned).
type Chunk struct {
	Inline []byte
	File   *os.File // closed by the receiver
	Size   int64
}

// ChunkReader yields a layer tar as chunks; io.EOF ends it.
type ChunkReader interface {
	Next() (Chunk, error)
}

// CloneStats counts how a layer's file bodies got into the store.
type CloneStats struct {
	Cloned, ClonedBytes int64 // share their extents with the chunk's file
	Copied, CopiedBytes int64 // bytes copied (refused FICLONE, or bodies not in one chunk)
	// Cloned bodies whose CRC64 was known (NewImage.BodyCRC), in a layer
	// whose diff ID was trusted: not read at all.
	Unread, UnreadBytes int64
}

// cloneDiffer lays out a layer's files in c/storage's staging directory as
// c/storage's own extraction does (pkg/archive Unpack with the overlay
// whiteout format), cloning each body that is one file chunk instead of
// writing it, and records the tar-split of the tar in the same pass. It is
// the drivers.Differ c/storage's PrepareStagedLayer calls.
type cloneDiffer struct {
	chunks ChunkReader
	diffID string
	policy reflink.Policy
	ahead  bool // clone file chunks ahead of the tar (startChunksAhead)
	stats  CloneStats
	// trustDiffID: the tar is known to have diffID (NewImage.TrustDiffIDs),
	// so it is not hashed and a body cloned ahead is not read through
	// the tar; bodyCRC: NewImage.BodyCRC.
	trustDiffID bool
	bodyCRC     func(*os.File) (uint64, bool)

	// What verifyLayer checks the stored layer against: for each body in
	// tar order, the file its bytes were read from, and the sha256 of the
	// tar-split handed to the store.
	bodies     []bodyRecord
	tarSplitID [sha256.Size]byte
}

// bodyRecord is one tar member body as ApplyDiff hashed it. A body read
// from the file laid out for it (a clone, or a copy CloneFile made) is
// known by that file's inode; any other (bytes written from the stream,
// or a body the extraction did not store) has read false and is checked
// by reading the stored file back.
type bodyRecord struct {
	name     string // the member's name as recorded in the tar-split
	size     int64
	crc      uint64
	read     bool
	dev, ino uint64
}

func (d *cloneDiffer) Close() error { return nil }

// chunkStream reads chunks as one stream. A file chunk is read with
// ReadAt from src, which starts as the chunk's file and may be switched to
// the clone made from it.
type chunkStream struct {
	chunks  ChunkReader
	ahead   *chunksAhead // nil: chunks are read and files opened as needed
	inline  []byte
	file    *os.File // current file chunk, nil between them
	src     *os.File
	off     int64
	size    int64
	pending bool // file chunk fetched but not started
	// A file chunk cloned ahead: file is the clone (unnamed until the
	// Differ links it), crc the CRC64 of its bytes (known: not read for
	// it).
	cloned bool
	how    reflink.Result
	crc    uint64
	known  bool
	// unread: the current file chunk is a body whose bytes nobody needs
	// (a clone linked in place, with its CRC64, in a tar whose diff ID is
	// trusted, so not hashed): Read passes over it without reading the
	// file, leaving the caller's buffer as it was. ApplyDiff sets it only
	// for such a body, and then only discards what Read gives.
	unread bool
}

func (c *chunkStream) Read(p []byte) (int, error) {
	for {
		if len(c.inline) > 0 {
			n := copy(p, c.inline)
			c.inline = c.inline[n:]
			return n, nil
		}
		if c.file != nil {
			c.pending = false
			if left := c.size - c.off; int64(len(p)) > left {
				p = p[:left]
			}
			var n int
			var err error
			if c.unread {
				n = len(p)
			} else {
				n, err = c.src.ReadAt(p, c.off)
			}
			c.off += int64(n)
			if c.off == c.size {
				c.closeFile()
				return n, nil
			}
			if err == io.EOF || n == 0 && err == nil {
				return n, fmt.Errorf("%s: %w (shorter than the %d bytes the stream says)", c.src.Name(), io.ErrUnexpectedEOF, c.size)
			}
			return n, err
		}
		if err := c.fetch(); err != nil {
			return 0, err
		}
	}
}

func (c *chunkStream) fetch() error {
	if c.ahead != nil {
		it, err := c.ahead.next()
		if err != nil {
			return err
		}
		if it.clone != nil {
			c.file, c.src, c.off, c.size, c.pending = it.clone, it.clone, 0, it.ch.Size, true
			c.cloned, c.how, c.crc, c.known = true, it.how, it.crc, it.known
			return nil
		}
		c.inline = it.ch.Inline
		return nil
	}
	ch, err := c.chunks.Next()
	if err != nil {
		return err
	}
	if ch.File != nil {
		if ch.Size == 0 {
			ch.File.Close()
			return nil
		}
		c.file, c.src, c.off, c.size, c.pending = ch.File, ch.File, 0, ch.Size, true
		return nil
	}
	c.inline = ch.Inline
	return nil
}

func (c *chunkStream) closeFile() {
	if c.file != nil {
		c.file.Close()
	}
	c.file, c.src, c.pending, c.cloned, c.known, c.unread = nil, nil, false, false, false, false
}

// bodyFile returns the file chunk that is exactly the next size bytes, if
// the stream is at the start of one: the body of a member whose header was
// just read.
func (c *chunkStream) bodyFile(size int64) (*os.File, error) {
	if len(c.inline) == 0 && c.file == nil {
		if err := c.fetch(); err != nil && err != io.EOF {
			return nil, err
		}
	}
	if c.file != nil && c.pending && c.size == size {
		return c.file, nil
	}
	return nil, nil
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var errLayerDigest = errors.New("layer digest mismatch")

func (d *cloneDiffer) ApplyDiff(dest string, options *archive.TarOptions, dopts *drivers.DifferOptions) (drivers.DriverWithDifferOutput, error) {
	out := drivers.DriverWithDifferOutput{Differ: d, Target: dest, Size: -1}
	if dopts == nil || dopts.Format != drivers.DifferOutputFormatDir {
		return out, errors.New("the store asked for a layer format other than a directory (composefs-backed store?)")
	}
	if options.ForceMask != nil {
		return out, errors.New("stores with a forced file mask are not supported")
	}
	ts, err := os.CreateTemp(dopts.StagingDirectory, "cfs-tar-split-")
	if err != nil {
		return out, err
	}
	ok := false
	defer func() {
		if !ok {
			ts.Close()
		}
	}()
	os.Remove(ts.Name()) // c/storage reads it through the descriptor
	tsSum := sha256.New()
	// Buffered: the packer writes each entry on its own, a system call
	// per segment and per file otherwise.
	tsBuf := bufio.NewWriterSize(io.MultiWriter(ts, tsSum), 256<<10)
	packer := tsstorage.NewJSONPacker(tsBuf)

	cs := &chunkStream{chunks: d.chunks}
	if d.ahead {
		cs.ahead = startChunksAhead(d.chunks, dest, d.policy, d.bodyCRC)
		defer cs.ahead.close()
	}
	defer cs.closeFile()
	// The layer's sha256, unless the diff ID is trusted: then the
	// stream's own name for the tar is its digest.
	var sum hash.Hash
	cnt := &counter{r: cs}
	if !d.trustDiffID {
		sum = sha256.New()
		cnt.r = io.TeeReader(cs, sum)
	}
	tr := tar.NewReader(cnt)
	tr.RawAccounting = true
	x := newExtractor(dest, options)
	segment := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		_, err := packer.AddEntry(tsstorage.Entry{Type: tsstorage.SegmentType, Payload: b})
		return err
	}
	crc := crc64iso.New()
	uids, gids := map[uint32]bool{}, map[uint32]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if err := segment(tr.RawBytes()); err != nil {
				return out, err
			}
			break
		}
		if err != nil {
			return out, fmt.Errorf("layer %s: reading tar: %w", d.diffID, err)
		}
		if err := segment(tr.RawBytes()); err != nil {
			return out, err
		}
		if !strings.HasPrefix(filepath.Base(hdr.Name), archive.WhiteoutPrefix) {
			uids[uint32(hdr.Uid)], gids[uint32(hdr.Gid)] = true, true
		}
		if filepath.Clean(hdr.Name) == "." && hdr.Typeflag == tar.TypeDir {
			mode := os.FileMode(hdr.Mode & 0o7777)
			out.RootDirMode = &mode
		}
		var clone *os.File
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if clone, err = cs.bodyFile(hdr.Size); err != nil {
				return out, fmt.Errorf("layer %s: member %q: %w", d.diffID, hdr.Name, err)
			}
		}
		crc.Reset()
		var body io.Reader = io.TeeReader(tr, crc)
		bodyCRC := func() uint64 { return crc.Sum64() }
		if clone != nil && cs.cloned {
			// The clone's CRC64 is known: the body is all of it.
			body = tr
			known := cs.crc
			bodyCRC = func() uint64 { return known }
			if d.trustDiffID {
				cs.unread = true
				if cs.known {
					d.stats.Unread++
					d.stats.UnreadBytes += hdr.Size
				}
			}
		}
		x.body = bodyRecord{size: hdr.Size}
		if err := x.entry(hdr, body, clone, cs, d); err != nil {
			return out, fmt.Errorf("layer %s: member %q: %w", d.diffID, hdr.Name, err)
		}
		// Whatever the extraction did not read (whiteouts, bodies of
		// entries it skipped) still belongs to the tar and its CRC.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return out, fmt.Errorf("layer %s: member %q: %w", d.diffID, hdr.Name, err)
		}
		e := tsstorage.Entry{Type: tsstorage.FileType, Size: hdr.Size}
		if hdr.Size > 0 {
			e.Payload = binary.BigEndian.AppendUint64(nil, bodyCRC())
			x.body.name, x.body.crc = hdr.Name, bodyCRC()
			d.bodies = append(d.bodies, x.body)
		}
		e.SetName(hdr.Name)
		if _, err := packer.AddEntry(e); err != nil {
			return out, err
		}
		if err := segment(tr.RawBytes()); err != nil {
			return out, err
		}
	}
	// Padding after the end-of-archive blocks is part of the diff ID too.
	buf := make([]byte, 1<<20)
	for {
		n, err := cnt.Read(buf)
		if n > 0 {
			if err := segment(buf[:n]); err != nil {
				return out, err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, fmt.Errorf("layer %s: %w", d.diffID, err)
		}
	}
	if err := x.finish(); err != nil {
		return out, fmt.Errorf("layer %s: %w", d.diffID, err)
	}
	got := d.diffID
	if sum != nil {
		got = "sha256:" + hex.EncodeToString(sum.Sum(nil))
	}
	if got != d.diffID {
		return out, fmt.Errorf("layer %s: the stored tar has digest %s: %w", d.diffID, got, errLayerDigest)
	}
	if err := tsBuf.Flush(); err != nil {
		return out, err
	}
	if _, err := ts.Seek(0, io.SeekStart); err != nil {
		return out, err
	}
	out.TarSplit = ts
	copy(d.tarSplitID[:], tsSum.Sum(nil))
	out.UncompressedDigest = digest.Digest(got)
	out.Size = cnt.n
	out.UIDs, out.GIDs = sortedIDs(uids), sortedIDs(gids)
	ok = true
	return out, nil
}

func sortedIDs(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// extractor applies tar members to a directory with c/storage's rules
// (pkg/archive Unpack and extractTarFileEntry, overlay whiteouts), so that
// the layer is the one c/storage would have made from the same tar.
type extractor struct {
	dest    string
	options *archive.TarOptions
	ids     *idtools.IDMappings
	convert archive.TarWhiteoutConverter
	dirs    []*tar.Header
	body    bodyRecord        // of the current member
	parents map[string]string // see resolve
	buf     []byte
}

func newExtractor(dest string, options *archive.TarOptions) *extractor {
	return &extractor{
		dest:    filepath.Clean(dest),
		options: options,
		ids:     idtools.NewIDMappingsFromMaps(options.UIDMaps, options.GIDMaps),
		convert: archive.GetWhiteoutConverter(options.WhiteoutFormat, options.WhiteoutData),
		parents: map[string]string{},
		buf:     make([]byte, chunkReadBuf),
	}
}

// resolve is the path a member name refers to inside dest, with every
// parent resolved inside dest (symlinks included), and whether that
// parent is known to be a directory.
//
// SecureJoin looks at every component, so a deep tree cost a number of
// lstat calls growing with the square of its depth. A parent that
// resolved to itself (no symlink on the way) and is a directory is
// remembered: only replacing one of its directories changes how it
// resolves, and every replacement goes through entry's RemoveAll, which
// forgets them all.
func (x *extractor) resolve(name string) (string, bool, error) {
	rel, err := filepath.Rel(x.dest, filepath.Join(x.dest, name))
	if err != nil {
		return "", false, err
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false, fmt.Errorf("%q is outside of the layer", name)
	}
	dir, base := filepath.Split(name)
	if parent, ok := x.parents[dir]; ok {
		return filepath.Join(parent, base), true, nil
	}
	parent, err := securejoin.SecureJoin(x.dest, dir)
	if err != nil {
		return "", false, err
	}
	isDir := false
	if parent == filepath.Join(x.dest, dir) {
		if fi, err := os.Lstat(parent); err == nil && fi.IsDir() {
			x.parents[dir] = parent
			isDir = true
		}
	}
	return filepath.Join(parent, base), isDir, nil
}

func (x *extractor) entry(hdr *tar.Header, body io.Reader, cloneFrom *os.File, cs *chunkStream, d *cloneDiffer) error {
	hdr.Name = filepath.Clean(hdr.Name)
	path, parentIsDir, err := x.resolve(hdr.Name)
	if err != nil {
		return err
	}
	rootIDs := x.ids.RootPair()
	if path == x.dest {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("refusing to act on a non-directory entry as the archive root")
		}
	} else if parentIsDir {
		// It exists.
	} else if _, err := os.Lstat(filepath.Dir(path)); errors.Is(err, os.ErrNotExist) {
		if err := idtools.MkdirAllAndChownNew(filepath.Dir(path), 0o777, rootIDs); err != nil {
			return err
		}
	}
	// A body cloned ahead is linked into place without looking first: the
	// name is almost always new, and an existing one (EEXIST) is removed
	// then, as it would have been now (linkCloned). Whiteouts take the
	// common path.
	optimistic := cloneFrom != nil && cs.cloned &&
		(x.convert == nil || !strings.HasPrefix(filepath.Base(path), archive.WhiteoutPrefix))
	if optimistic {
		// Checked below by linkCloned.
	} else if fi, err := os.Lstat(path); err == nil && (!fi.IsDir() || hdr.Typeflag != tar.TypeDir) {
		clear(x.parents)
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	host, err := x.ids.ToHost(idtools.IDPair{UID: hdr.Uid, GID: hdr.Gid})
	if err != nil {
		return err
	}
	hdr.Uid, hdr.Gid = host.UID, host.GID
	if x.convert != nil && path != x.dest {
		write, err := x.convert.ConvertRead(stdHeader(hdr), path)
		if err != nil || !write {
			return err
		}
	}
	info := hdr.FileInfo()
	var linkTarget string
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
			if err := os.Mkdir(path, info.Mode()); err != nil {
				return err
			}
		}
	case tar.TypeReg, tar.TypeRegA:
		if cloneFrom != nil && cs.cloned {
			// Cloned ahead: it needs its name, and its owner, mode and
			// times are set through the descriptor at hand rather than by
			// walking the path three times more.
			if err := x.linkCloned(cloneFrom, path); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(cloneFrom.Fd()), &st); err != nil {
				return &os.PathError{Op: "fstat", Path: cloneFrom.Name(), Err: err}
			}
			// Before the body is read: its last byte closes the clone.
			if err := x.fdMetadata(cloneFrom, &st, hdr, info); err != nil {
				return err
			}
			if err := x.readCloned(&st, body, cs, d, hdr.Size); err != nil {
				return err
			}
			return x.xattrs(path, hdr)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, info.Mode())
		if err != nil {
			return err
		}
		err = x.writeBody(f, body, cloneFrom, cs, d, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeBlock, tar.TypeChar, tar.TypeFifo:
		if x.options.InUserNS && hdr.Typeflag != tar.TypeFifo {
			return nil
		}
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		default:
			mode |= unix.S_IFIFO
		}
		if err := unix.Mknod(path, mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return &os.PathError{Op: "mknod", Path: path, Err: err}
		}
	case tar.TypeLink:
		target := filepath.Join(x.dest, hdr.Linkname)
		if target != x.dest && !strings.HasPrefix(target, x.dest+"/") {
			return fmt.Errorf("invalid hardlink %q", hdr.Linkname)
		}
		if linkTarget, _, err = x.resolve(filepath.Clean(hdr.Linkname)); err != nil {
			return err
		}
		if err := unix.Linkat(unix.AT_FDCWD, linkTarget, unix.AT_FDCWD, path, 0); err != nil {
			return &os.LinkError{Op: "link", Old: linkTarget, New: path, Err: err}
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, path); err != nil {
			return err
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unhandled tar header type %d", hdr.Typeflag)
	}
	if !x.options.NoLchown {
		if err := idtools.SafeLchown(path, hdr.Uid, hdr.Gid); err != nil && !x.options.IgnoreChownErrors {
			return err
		}
	}
	linkToSymlink := false
	if hdr.Typeflag == tar.TypeLink {
		fi, err := os.Lstat(linkTarget)
		linkToSymlink = err != nil || fi.Mode()&os.ModeSymlink != 0
	}
	if hdr.Typeflag != tar.TypeSymlink && !linkToSymlink {
		if err := os.Chmod(path, info.Mode()); err != nil {
			return err
		}
	}
	atime := hdr.AccessTime
	if atime.Before(hdr.ModTime) {
		atime = hdr.ModTime
	}
	switch {
	case hdr.Typeflag == tar.TypeSymlink:
		ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lutimes", Path: path, Err: err}
		}
	case !linkToSymlink:
		if err := system.Chtimes(path, atime, hdr.ModTime); err != nil {
			return err
		}
	}
	if err := x.xattrs(path, hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		x.dirs = append(x.dirs, hdr)
	}
	return nil
}

// xattrs sets a member's extended attributes, but security.selinux.
func (x *extractor) xattrs(path string, hdr *tar.Header) error {
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, "SCHILY.xattr.")
		if !ok || name == "security.selinux" {
			continue
		}
		if err := system.Lsetxattr(path, name, []byte(value), 0); err != nil {
			if errors.Is(err, system.ENOTSUP) || x.options.InUserNS && errors.Is(err, unix.EPERM) {
				continue
			}
			return err
		}
	}
	return nil
}

// maxTime is the latest time c/storage's system.Chtimes sets.
var maxTime = time.Unix(0, 1<<63-1)

// fdMetadata gives a regular file, through its descriptor, what entry
// gives every member by path: owner (SafeLchown: only if it differs),
// mode, and times clamped as system.Chtimes clamps them.
func (x *extractor) fdMetadata(f *os.File, st *unix.Stat_t, hdr *tar.Header, info os.FileInfo) error {
	if !x.options.NoLchown && (st.Uid != uint32(hdr.Uid) || st.Gid != uint32(hdr.Gid)) {
		if err := unix.Fchown(int(f.Fd()), hdr.Uid, hdr.Gid); err != nil && !x.options.IgnoreChownErrors {
			return &os.PathError{Op: "fchown", Path: f.Name(), Err: err}
		}
	}
	if err := f.Chmod(info.Mode()); err != nil {
		return err
	}
	atime := hdr.AccessTime
	if atime.Before(hdr.ModTime) {
		atime = hdr.ModTime
	}
	clamp := func(t time.Time) unix.Timespec {
		if t.Before(time.Unix(0, 0)) || t.After(maxTime) {
			t = time.Unix(0, 0)
		}
		return unix.NsecToTimespec(t.UnixNano())
	}
	ts := [2]unix.Timespec{clamp(atime), clamp(hdr.ModTime)}
	// utimensat(fd, NULL, times, 0) is futimens.
	if _, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); errno != 0 {
		return &os.PathError{Op: "futimens", Path: f.Name(), Err: errno}
	}
	return nil
}

// writeBody fills f with the member's body: a clone of the chunk's file
// when the body is one file chunk, then read back through the tar (for
// the CRC and the layer digest: what is checked is what was stored, and
// x.body records the file it was read from); otherwise the bytes are
// copied.
func (x *extractor) writeBody(f *os.File, body io.Reader, cloneFrom *os.File, cs *chunkStream, d *cloneDiffer, size int64) error {
	if cloneFrom != nil {
		how, err := reflink.CloneFile(f, cloneFrom, d.policy)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
		}
		cs.src = f
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
		x.body.read, x.body.dev, x.body.ino = true, st.Dev, st.Ino
		d.count(how, size)
		return nil
	}
	if d.policy == reflink.Always && size > 64 {
		return fmt.Errorf("the body is not one object of the composefs repository, so it cannot be cloned (%w)", reflink.ErrRefused)
	}
	n, err := io.Copy(f, body)
	if err != nil {
		return err
	}
	if size > 64 {
		d.stats.Copied++
		d.stats.CopiedBytes += n
	}
	return nil
}

// linkCloned gives a body cloned ahead its name; whatever has the name
// already is removed first, as entry removes it for any other member.
func (x *extractor) linkCloned(f *os.File, path string) error {
	err := linkInPlace(f, path)
	if err == nil || !errors.Is(err, unix.EEXIST) {
		return err
	}
	clear(x.parents)
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	return linkInPlace(f, path)
}

// readCloned reads a body cloned ahead, now named, through the tar (for
// the layer digest) and records the file it was read from (st).
func (x *extractor) readCloned(st *unix.Stat_t, body io.Reader, cs *chunkStream, d *cloneDiffer, size int64) error {
	how := cs.how
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, body, x.buf); err != nil {
		return err
	}
	x.body.read, x.body.dev, x.body.ino = true, st.Dev, st.Ino
	d.count(how, size)
	return nil
}

// count adds a body of size bytes to what the layer cloned or copied.
func (d *cloneDiffer) count(how reflink.Result, size int64) {
	if how == reflink.Cloned {
		d.stats.Cloned++
		d.stats.ClonedBytes += size
	} else {
		d.stats.Copied++
		d.stats.CopiedBytes += size
	}
}

// finish sets directory times last, as Unpack does: creating entries
// inside a directory changed its mtime.
func (x *extractor) finish() error {
	for _, hdr := range x.dirs {
		path, _, err := x.resolve(hdr.Name)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			continue
		}
		if err := system.Chtimes(path, hdr.AccessTime, hdr.ModTime); err != nil {
			return err
		}
	}
	return nil
}

// stdHeader converts tar-split's header to the standard library's, which
// is what c/storage's whiteout converter takes.
func stdHeader(h *tar.Header) *stdtar.Header {
	return &stdtar.Header{
		Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Size: h.Size, Mode: h.Mode,
		Uid: h.Uid, Gid: h.Gid, Uname: h.Uname, Gname: h.Gname,
		ModTime: h.ModTime, AccessTime: h.AccessTime, ChangeTime: h.ChangeTime,
		Devmajor: h.Devmajor, Devminor: h.Devminor, PAXRecords: h.PAXRecords,
	}
}
