package erofs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/xattr"
)

// DirOptions control FromDir and WriteDir.
type DirOptions struct {
	// Algorithm names the external objects (fsverity.SHA512 for
	// composefs-rs repositories, SHA256 for mkcomposefs compatibility).
	Algorithm fsverity.Algorithm
	// Object, if set, is called once per external file with its path and
	// digest, e.g. to store the bytes in an objects dir. It may be called
	// from several goroutines at once.
	Object func(path string, digest []byte) error
	// Hardlinks merges the names of one inode (same st_dev and st_ino)
	// into one image inode, as composefs-rs's read_filesystem does. The
	// default, like C mkcomposefs, gives every name an inode of its own
	// (nlink 1) and never looks at st_ino, so the image does not depend
	// on how the source tree happens to be linked.
	Hardlinks bool
}

// FromDir builds the tree of a directory the way mkcomposefs does: files
// of InlineThreshold bytes or less are inline, larger ones are external
// objects named by their fs-verity digest. With opts.Hardlinks, names of
// one inode become hardlinks of the first in dumpfile order. Symlinks are
// not followed.
func FromDir(dir string, opts DirOptions) (*Node, error) {
	var root *Node
	err := walkDir(dir, opts, treeSink{&root})
	if err != nil {
		return nil, err
	}
	return root, nil
}

// WriteDir writes the image of a directory to w: the bytes
// Write(w, FromDir(dir, dopts), opts) writes, but each entry becomes the
// writer's inode as it is listed (a Builder), so no Node tree of the
// whole directory is held beside the inodes. opts must name one version
// (NewBuilder).
func WriteDir(w io.Writer, dir string, dopts DirOptions, opts Options) error {
	b, err := NewBuilder(opts)
	if err != nil {
		return err
	}
	if err := walkDir(dir, dopts, builderSink{b}); err != nil {
		return err
	}
	return b.Write(w)
}

// dirSink receives a directory walk: the entries in pre-order, children
// in name order, so the first name of an inode is its first in dumpfile
// order. H is the sink's handle of a directory or leaf it was given.
type dirSink[H any] interface {
	// root and add get the walker's scratch node, which they must not
	// keep; the slices and strings in it stay valid and unchanged.
	root(n *Node) (H, error)
	add(dir H, n *Node) (H, error)
	link(dir H, name string, first H) error
	// external gives a file added with a size and no content its digest.
	// It is called on digest workers, at most once per handle, while the
	// walk goes on; nothing else touches that handle's inode meanwhile.
	external(h H, digest []byte) error
}

// treeSink builds the Node tree FromDir returns.
type treeSink struct{ top **Node }

func (s treeSink) root(n *Node) (*Node, error) {
	c := *n
	*s.top = &c
	return &c, nil
}

func (s treeSink) add(dir *Node, n *Node) (*Node, error) {
	c := new(Node)
	*c = *n
	return c, dir.AddChild(c)
}

func (s treeSink) link(dir *Node, name string, first *Node) error {
	return dir.AddChild(&Node{Name: name, LinkTo: first})
}

func (s treeSink) external(n *Node, digest []byte) error {
	n.SetExternalShared(digest, n.Size)
	return nil
}

// builderSink feeds a Builder.
type builderSink struct{ b *Builder }

func (s builderSink) root(n *Node) (*Entry, error)            { return s.b.Root(n) }
func (s builderSink) add(dir *Entry, n *Node) (*Entry, error) { return s.b.Add(dir, n) }
func (s builderSink) link(dir *Entry, name string, first *Entry) error {
	return s.b.Link(dir, name, first)
}
func (s builderSink) external(e *Entry, digest []byte) error { return e.SetDigest(digest) }

// walker lists a directory tree in one goroutine, relative to each
// directory's descriptor (openat, fstatat: no path is walked again from
// the top), and hands every external file, open, to digest workers, one
// per core, so that hashing (most of the work) keeps every core busy
// while the walk goes on and no directory waits for its largest file.
type walker[H any] struct {
	sink dirSink[H]
	opts DirOptions
	seen map[devIno]H
	ctx  context.Context // done when a digest worker failed
	jobs chan digestJob[H]
	// noatime is O_NOATIME until the kernel refuses it (EPERM: files of
	// another owner without CAP_FOWNER): reading the tree does not dirty
	// every inode.
	noatime int
	node    Node   // scratch: the sinks copy what they keep
	dirbuf  []byte // getdents
	inline  []byte // arena of inline contents
}

type devIno struct{ dev, ino uint64 }

// digestJob is an external file, open as fd, whose digest is still to be
// computed; size is what fstat said.
type digestJob[H any] struct {
	h    H
	fd   int
	size int64
	dir  string
	name string
}

func (j *digestJob[H]) path() string { return loc{j.dir, j.name}.String() }

// loc is where an entry is, made into a path only for a message or a
// callback: most entries never need theirs.
type loc struct{ dir, name string }

func (l loc) String() string {
	if l.name == "" {
		return l.dir
	}
	return filepath.Join(l.dir, l.name)
}

// statEveryEntry makes the walk ignore the types getdents gives, as on a
// filesystem that does not fill them in (DT_UNKNOWN). Tests set it.
var statEveryEntry bool

// dirent64 is one entry of a directory listing.
type dirent64 struct {
	name string
	typ  uint8
}

func walkDir[H any](dir string, opts DirOptions, sink dirSink[H]) error {
	if opts.Algorithm.Size() == 0 {
		return fmt.Errorf("%s: invalid fs-verity %v", dir, opts.Algorithm)
	}
	workers, ctx := errgroup.WithContext(context.Background())
	w := &walker[H]{
		sink: sink, opts: opts, seen: map[devIno]H{}, ctx: ctx,
		// A bounded queue bounds the files open at once.
		jobs:    make(chan digestJob[H], 256),
		noatime: unix.O_NOATIME,
		dirbuf:  make([]byte, 32<<10),
	}
	for range runtime.GOMAXPROCS(0) {
		workers.Go(w.digestWorker)
	}
	err := w.walkRoot(dir)
	close(w.jobs)
	if werr := workers.Wait(); werr != nil {
		return werr
	}
	return err
}

func (w *walker[H]) walkRoot(dir string) error {
	fd, err := w.openat(unix.AT_FDCWD, dir, unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s: not a directory", dir)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	n, err := w.fill("", &st, fd, loc{dir: dir})
	if err != nil {
		return err
	}
	h, err := w.sink.root(n)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return w.dir(fd, dir, h)
}

// openat opens name in dir without following a symlink, without
// blocking on a fifo and, where allowed, without updating its atime.
func (w *walker[H]) openat(dir int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|w.noatime, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EPERM) && w.noatime != 0:
			w.noatime = 0
			continue
		}
		return fd, err
	}
}

// dir adds the entries of the directory open as fd (path p, handle h),
// recursing into subdirectories as they come (pre-order).
func (w *walker[H]) dir(fd int, p string, h H) error {
	ents, err := w.readDir(fd, p)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if w.ctx.Err() != nil {
			return context.Cause(w.ctx)
		}
		if err := w.entry(fd, p, e, h); err != nil {
			return err
		}
	}
	return nil
}

// readDir lists the directory open as fd, sorted by name (bytewise, as
// mkcomposefs sorts), with the entry types getdents gives. The names
// share one string per directory.
func (w *walker[H]) readDir(fd int, p string) ([]dirent64, error) {
	var names []byte
	type span struct {
		off, n int
		typ    uint8
	}
	var spans []span
	for {
		n, err := unix.Getdents(fd, w.dirbuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if n == 0 {
			break
		}
		// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16,
		// d_type u8, d_name NUL-terminated.
		for b := w.dirbuf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("%s: bad directory entry from getdents", p)
			}
			ino, typ, name := binary.NativeEndian.Uint64(b[0:8]), b[18], b[19:reclen]
			b = b[reclen:]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			if ino == 0 || string(name) == "." || string(name) == ".." {
				continue // ino 0: a deleted entry, as os.ReadDir skips it
			}
			if statEveryEntry {
				typ = unix.DT_UNKNOWN
			}
			spans = append(spans, span{len(names), len(name), typ})
			names = append(names, name...)
		}
	}
	all := string(names)
	ents := make([]dirent64, len(spans))
	for i, s := range spans {
		ents[i] = dirent64{all[s.off : s.off+s.n], s.typ}
	}
	slices.SortFunc(ents, func(a, b dirent64) int { return strings.Compare(a.name, b.name) })
	return ents, nil
}

// entry adds one entry of the directory open as dfd (path dp). Regular
// files and directories are opened straight away (the type from getdents)
// and read through their descriptor; an entry whose type getdents does
// not tell, or that changed since, is looked at with fstatat first.
func (w *walker[H]) entry(dfd int, dp string, e dirent64, parent H) error {
	switch e.typ {
	case unix.DT_REG:
		fd, err := w.openat(dfd, e.name, 0)
		if err == nil {
			return w.opened(fd, dp, e.name, parent, unix.S_IFREG)
		}
		// ELOOP, ENXIO: now a symlink or a socket. EACCES: an empty
		// file needs no reading.
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%s: %w", loc{dp, e.name}, err)
		}
	case unix.DT_DIR:
		fd, err := w.openat(dfd, e.name, unix.O_DIRECTORY)
		if err == nil {
			return w.opened(fd, dp, e.name, parent, unix.S_IFDIR)
		}
		if !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("%s: %w", loc{dp, e.name}, err)
		}
	}
	p := loc{dp, e.name}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if typ := st.Mode & unix.S_IFMT; typ == unix.S_IFDIR || typ == unix.S_IFREG && st.Size > 0 {
		flags := 0
		if typ == unix.S_IFDIR {
			flags = unix.O_DIRECTORY
		}
		fd, err := w.openat(dfd, e.name, flags)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return w.opened(fd, dp, e.name, parent, typ)
	}
	n, err := w.fill(e.name, &st, -1, p)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if err := w.readlink(n, dfd, p, &st); err != nil {
			return err
		}
	}
	_, err = w.addLeaf(parent, n, &st, p)
	return err
}

// opened adds the regular file or directory open as fd, which it
// closes, or hands to a digest worker that does.
func (w *walker[H]) opened(fd int, dp, name string, parent H, want uint32) error {
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	p := loc{dp, name}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != want {
		return fmt.Errorf("%s: changed type while the directory was read", p)
	}
	n, err := w.fill(name, &st, fd, p)
	if err != nil {
		return err
	}
	if want == unix.S_IFDIR {
		h, err := w.sink.add(parent, n)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return w.dir(fd, p.String(), h)
	}
	n.Size = uint64(st.Size)
	if st.Size > 0 && st.Size <= InlineThreshold {
		if n.Content, err = w.readInline(fd, st.Size); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	h, err := w.addLeaf(parent, n, &st, p)
	if err != nil || !h.ok || st.Size <= InlineThreshold {
		return err
	}
	keep = true
	select {
	case w.jobs <- digestJob[H]{h: h.h, fd: fd, size: st.Size, dir: dp, name: name}:
		return nil
	case <-w.ctx.Done():
		keep = false
		return context.Cause(w.ctx)
	}
}

// fill sets the scratch node from st and the xattrs of the file (read
// through fd, or by path p if fd < 0).
func (w *walker[H]) fill(name string, st *unix.Stat_t, fd int, p loc) (*Node, error) {
	n := &w.node
	*n = Node{Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid,
		MtimeSec: st.Mtim.Sec, MtimeNsec: uint32(st.Mtim.Nsec)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Rdev = st.Rdev
	}
	var m map[string][]byte
	var err error
	if fd >= 0 {
		m, err = xattr.ListFD(fd)
	} else {
		m, err = xattr.List(p.String())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(m) > 0 {
		n.Xattrs = make([]Xattr, 0, len(m))
		for name, v := range m {
			n.Xattrs = append(n.Xattrs, Xattr{Name: name, Value: v})
		}
		sortXattrs(n.Xattrs)
	}
	return n, nil
}

func (w *walker[H]) readlink(n *Node, dfd int, p loc, st *unix.Stat_t) error {
	buf := make([]byte, max(st.Size, 255)+1)
	for {
		k, err := unix.Readlinkat(dfd, n.Name, buf)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if k < len(buf) {
			n.Payload = string(buf[:k])
			n.Size = uint64(k)
			return nil
		}
		buf = make([]byte, 2*len(buf)) // grew in between
	}
}

// readInline reads a small file's size bytes into the inline arena.
func (w *walker[H]) readInline(fd int, size int64) ([]byte, error) {
	if int64(cap(w.inline)-len(w.inline)) < size {
		w.inline = make([]byte, 0, 64<<10)
	}
	data := w.inline[len(w.inline) : len(w.inline)+int(size) : len(w.inline)+int(size)]
	if err := readFull(fd, data); err != nil {
		return nil, err
	}
	w.inline = w.inline[:len(w.inline)+int(size)]
	return data, nil
}

type leafHandle[H any] struct {
	h  H
	ok bool // a new inode, not a further name of one added before
}

// addLeaf adds a non-directory, or with Hardlinks a further name of an
// inode added before.
func (w *walker[H]) addLeaf(parent H, n *Node, st *unix.Stat_t, p loc) (leafHandle[H], error) {
	linkable := w.opts.Hardlinks && st.Nlink > 1
	key := devIno{uint64(st.Dev), st.Ino}
	if linkable {
		if first, ok := w.seen[key]; ok {
			if err := w.sink.link(parent, n.Name, first); err != nil {
				return leafHandle[H]{}, fmt.Errorf("%s: %w", p, err)
			}
			return leafHandle[H]{}, nil
		}
	}
	h, err := w.sink.add(parent, n)
	if err != nil {
		return leafHandle[H]{}, fmt.Errorf("%s: %w", p, err)
	}
	if linkable {
		w.seen[key] = h
	}
	return leafHandle[H]{h, true}, nil
}

// digestWorker hashes the files the walk sends, each with one Hasher and
// read buffer for all, and gives their sinks the digests, which it
// allocates in slabs (they live as long as the image's inodes).
func (w *walker[H]) digestWorker() error {
	h := fsverity.New(w.opts.Algorithm)
	buf := make([]byte, 256<<10) // a multiple of the block: hashed in place
	size := w.opts.Algorithm.Size()
	var slab []byte
	for j := range w.jobs {
		if w.ctx.Err() != nil {
			unix.Close(j.fd) // drain: the walk stops at its next send
			continue
		}
		if len(slab) < size {
			slab = make([]byte, 1024*size)
		}
		d, err := digestFD(h, j.fd, j.size, buf, slab[:0:size])
		unix.Close(j.fd)
		if err != nil {
			return fmt.Errorf("%s: %w", j.path(), err)
		}
		slab = slab[size:]
		if err := w.sink.external(j.h, d); err != nil {
			return fmt.Errorf("%s: %w", j.path(), err)
		}
		if w.opts.Object != nil {
			if err := w.opts.Object(j.path(), d); err != nil {
				return err
			}
		}
	}
	return nil
}

// digestFD appends to out the fs-verity digest of the first size bytes of
// the file open as fd, the size its inode records.
func digestFD(h *fsverity.Hasher, fd int, size int64, buf, out []byte) ([]byte, error) {
	h.Reset()
	for done := int64(0); done < size; {
		b := buf
		if rest := size - done; rest < int64(len(b)) {
			b = b[:rest]
		}
		k, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fs-verity digest: %w", err)
		}
		if k == 0 {
			return nil, fmt.Errorf("fs-verity digest: file shrank to %d bytes while read (it had %d)", done, size)
		}
		h.Write(b[:k])
		done += int64(k)
	}
	return h.Sum(out), nil
}

func readFull(fd int, b []byte) error {
	for done := 0; done < len(b); {
		k, err := unix.Read(fd, b[done:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return io.ErrUnexpectedEOF
		}
		done += k
	}
	return nil
}
