package erofs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/xattr"
)

// DirOptions control FromDir.
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
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	// Digests, most of the work, are computed by one worker per core fed
	// from the whole walk, so that no directory waits for the hashing of
	// its largest file before the next one is listed.
	hashers, ctx := errgroup.WithContext(context.Background())
	b := &dirBuilder{opts: opts, seen: map[devIno]*Node{}, ctx: ctx, digests: make(chan digestJob, 1024)}
	for range runtime.GOMAXPROCS(0) {
		hashers.Go(func() error {
			for j := range b.digests {
				if ctx.Err() != nil {
					continue // drain: the walk stops at its next send
				}
				if err := b.digest(j); err != nil {
					return err
				}
			}
			return nil
		})
	}
	root := &Node{}
	err := b.fill(root, dir, &st)
	if err == nil {
		err = b.children(dir, root)
	}
	close(b.digests)
	if herr := hashers.Wait(); herr != nil {
		return nil, herr
	}
	if err != nil {
		return nil, err
	}
	// children meets a directory's own entries before its subdirectories'
	// (/b before /a/x); the inode belongs to the first name in pre-order.
	root.NormalizeLinks()
	return root, nil
}

type devIno struct{ dev, ino uint64 }

type dirBuilder struct {
	opts    DirOptions
	seen    map[devIno]*Node
	ctx     context.Context // done when a digest failed
	digests chan digestJob
}

// digestJob is an external file whose digest is still to be computed.
// Its node is in the tree already; only the worker that takes the job
// touches it until FromDir returns.
type digestJob struct {
	n    *Node
	p    string
	size uint64
	mode uint32
}

func (b *dirBuilder) digest(j digestJob) error {
	digest, err := fsverity.DigestFile(j.p, b.opts.Algorithm)
	if err != nil {
		return err
	}
	j.n.SetExternal(digest, j.size)
	j.n.Mode = j.mode
	if b.opts.Object != nil {
		return b.opts.Object(j.p, digest)
	}
	return nil
}

// children lists dir, decides hardlinks in name order (so the first name
// is canonical), then fills the new nodes in parallel: the work is lstat,
// listxattr and hashing, which overlap well across cores.
func (b *dirBuilder) children(dir string, parent *Node) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	sort.Strings(names)
	type job struct {
		n  *Node
		p  string
		st unix.Stat_t
	}
	jobs := make([]job, 0, len(names))
	for _, name := range names {
		j := job{p: filepath.Join(dir, name)}
		if err := unix.Lstat(j.p, &j.st); err != nil {
			return fmt.Errorf("%s: %w", j.p, err)
		}
		key := devIno{uint64(j.st.Dev), j.st.Ino}
		linkable := b.opts.Hardlinks && j.st.Mode&unix.S_IFMT != unix.S_IFDIR && j.st.Nlink > 1
		if first, ok := b.seen[key]; ok && linkable {
			if err := parent.AddChild(&Node{Name: name, LinkTo: first}); err != nil {
				return fmt.Errorf("%s: %w", j.p, err)
			}
			continue
		}
		j.n = &Node{Name: name}
		if linkable {
			b.seen[key] = j.n
		}
		if err := parent.AddChild(j.n); err != nil {
			return fmt.Errorf("%s: %w", j.p, err)
		}
		jobs = append(jobs, j)
	}
	// The first error stops the jobs not yet started; Wait returns only
	// when every started one has finished, so nothing runs on after.
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(runtime.GOMAXPROCS(0) * 2)
	for i := range jobs {
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			return b.fill(jobs[i].n, jobs[i].p, &jobs[i].st)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, j := range jobs {
		// From the lstat, not the node: a digest worker may be writing
		// to the node of a file.
		if j.st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := b.children(j.p, j.n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *dirBuilder) fill(n *Node, p string, st *unix.Stat_t) error {
	n.Mode, n.UID, n.GID = st.Mode, st.Uid, st.Gid
	n.MtimeSec, n.MtimeNsec = st.Mtim.Sec, uint32(st.Mtim.Nsec)
	xs, err := readXattrs(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	n.Xattrs = xs
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Rdev = st.Rdev
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		n.Payload = target
		n.Size = uint64(len(target))
	case unix.S_IFREG:
		n.Size = uint64(st.Size)
		if st.Size == 0 {
			break
		}
		if st.Size <= InlineThreshold {
			data, err := readSmall(p, st.Size)
			if err != nil {
				return err
			}
			n.Content = data
			break
		}
		select {
		case b.digests <- digestJob{n: n, p: p, size: uint64(st.Size), mode: st.Mode}:
		case <-b.ctx.Done():
			return context.Cause(b.ctx)
		}
	}
	return nil
}

func readSmall(p string, size int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return data, nil
}

// readXattrs lists a path's xattrs without following symlinks, sorted by
// name. A filesystem without xattr support has none.
func readXattrs(p string) ([]Xattr, error) {
	m, err := xattr.List(p)
	if err != nil || len(m) == 0 {
		return nil, err
	}
	out := make([]Xattr, 0, len(m))
	for name, v := range m {
		out = append(out, Xattr{Name: name, Value: v})
	}
	sortXattrs(out)
	return out, nil
}
