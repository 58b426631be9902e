package ostreeimport

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// builder feeds stream entries to tree writers. /etc gets a tree writer of
// its own: ostree keeps it at /usr/etc, and /etc sorts before /usr, so its
// finished DirRef waits until /usr is about to close and is added there.
type builder struct {
	repo  *ostree.Repo
	main  *ostree.TreeWriter
	stack []openDir // the directories we entered, innermost last

	etc       *ostree.DirRef // /etc, finished, not yet placed under /usr
	sawEtc    bool
	placedEtc bool

	// sums resolves hardlinks: a hardlink may name any earlier file.
	sums   map[string][32]byte
	kernel string
	stats  Result
}

type openDir struct {
	path string
	w    *ostree.TreeWriter
}

func newBuilder(repo *ostree.Repo) *builder {
	return &builder{repo: repo, main: repo.NewTreeWriter(), sums: map[string][32]byte{}}
}

// closeDirs leaves the directories the stream says are complete. Closed
// also lists directories we skipped (below /tmp and the like); those were
// never entered and are not on our stack.
func (b *builder) closeDirs(closed []string) error {
	for _, p := range closed {
		if len(b.stack) == 0 || b.stack[len(b.stack)-1].path != p {
			continue
		}
		top := b.stack[len(b.stack)-1]
		if p == "/usr" && b.etc != nil {
			if err := top.w.AddDir("etc", *b.etc); err != nil {
				return err
			}
			b.etc, b.placedEtc = nil, true
		}
		ref, err := top.w.LeaveDir()
		if err != nil {
			return err
		}
		b.stack = b.stack[:len(b.stack)-1]
		if p == "/etc" {
			b.etc = &ref
		}
	}
	return nil
}

func (b *builder) add(e *stream.Entry) error {
	b.stats.Entries++
	if err := Check(e); err != nil {
		return err
	}
	if Place(e) == Skip {
		b.stats.Skipped++
		return nil
	}
	if e.Path == "/" {
		b.stats.Dirs++
		b.stack = append(b.stack, openDir{"/", b.main})
		return b.main.EnterDir("", DirMeta(e))
	}
	parent, name := parentName(e.Path)
	if len(b.stack) == 0 || b.stack[len(b.stack)-1].path != parent {
		return fmt.Errorf("%s: parent directory %s is not open (the stream's order is broken)", e.Path, parent)
	}
	w := b.stack[len(b.stack)-1].w
	if e.Path == "/usr/etc" && b.sawEtc {
		return errors.New("/usr/etc: the image has both /etc and /usr/etc; ostree keeps /etc at /usr/etc, so one would hide the other")
	}
	switch e.Type {
	case stream.TypeDir:
		b.stats.Dirs++
		if e.Path == "/etc" {
			b.sawEtc = true
			w = b.repo.NewTreeWriter()
			b.stack = append(b.stack, openDir{e.Path, w})
			return w.EnterDir("", DirMeta(e))
		}
		b.stack = append(b.stack, openDir{e.Path, w})
		return w.EnterDir(name, DirMeta(e))
	case stream.TypeFile:
		b.stats.Files++
		sum, err := b.object(e)
		if err != nil {
			return err
		}
		if kver, ok := kernelVersion(e.Path); ok && b.kernel == "" {
			b.kernel = kver
		}
		b.sums[e.Path] = sum
		return w.AddFile(name, e.Ostree)
	case stream.TypeSymlink:
		b.stats.Symlinks++
		want, err := ostree.SymlinkChecksum(FileMeta(e), e.Target)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		// cfs-clone annotates symlinks; a list that was not through it
		// still imports, as the checksum follows from metadata and target.
		if e.Ostree != "" && e.Ostree != want {
			return fmt.Errorf("%s: symlink's ostree checksum %s is not that of its metadata and target (%s)", e.Path, e.Ostree, want)
		}
		e.Ostree = want
		if _, err := b.object(e); err != nil {
			return err
		}
		return w.AddFile(name, e.Ostree)
	case stream.TypeHardlink:
		b.stats.Hardlinks++
		sum, ok := b.sums[e.LinkTo]
		if !ok {
			return fmt.Errorf("%s: hardlink target %s was not committed", e.Path, e.LinkTo)
		}
		return w.AddFile(name, hex.EncodeToString(sum[:]))
	}
	return fmt.Errorf("%s: cannot commit a %s", e.Path, e.Type)
}

// object checks that the entry names a file object present in the repo
// and intact (a regular file of the entry's size, or a symlink of its
// target): one a power cut damaged is refused, never committed. The lock
// we hold since the start keeps it there until the commit is written.
func (b *builder) object(e *stream.Entry) ([32]byte, error) {
	var sum [32]byte
	if e.Ostree == "" {
		return sum, fmt.Errorf("%s: %w", e.Path, ErrNotAnnotated)
	}
	if _, err := hex.Decode(sum[:], []byte(e.Ostree)); err != nil || !ostree.ValidChecksum(e.Ostree) {
		return sum, fmt.Errorf("%s: bad ostree checksum %q", e.Path, e.Ostree)
	}
	missing := func() error {
		return fmt.Errorf("%s: file object %s is not in %s (pruned since cfs-clone ran, or cloned into another repository?)", e.Path, e.Ostree, b.repo.Path())
	}
	if e.Type != stream.TypeFile {
		// One lookup: a missing object is the check's not-exist error.
		err := b.repo.CheckSymlinkObject(e.Ostree, e.Target)
		if errors.Is(err, fs.ErrNotExist) {
			return sum, missing()
		}
		if err != nil {
			return sum, fmt.Errorf("%s: %w; run cfs-clone again to rewrite it", e.Path, err)
		}
		return sum, nil
	}
	// The checksum names metadata and content together. A symlink's is
	// recomputed from the entry; a file's content is not read again, but
	// the metadata the object was stored with must be the entry's, or the
	// commit would give the file a mode, owner or label the list never
	// said. The one stat that reads the metadata also gives the size
	// CheckFileObject checks.
	stored, size, err := b.repo.StoredFileObject(e.Ostree)
	if errors.Is(err, ostree.ErrNoObject) {
		return sum, missing()
	}
	if err != nil {
		return sum, fmt.Errorf("%s: %w", e.Path, err)
	}
	if want := FileMeta(e); !ostree.SameFileMeta(stored, want) {
		return sum, fmt.Errorf("%s: the entry says %v, but its ostree object %s was stored with %v (was the list edited after cfs-clone?)", e.Path, want, e.Ostree, stored)
	}
	if size != e.Size {
		return sum, fmt.Errorf("%s: %w; run cfs-clone again to rewrite it", e.Path, ostree.DamagedSize(b.repo.Path(), e.Ostree, size, e.Size))
	}
	return sum, nil
}

// finish returns the root once every directory has been left.
func (b *builder) finish() (ostree.DirRef, error) {
	if b.etc != nil && !b.placedEtc {
		return ostree.DirRef{}, errors.New("the image has /etc but no /usr directory to hold it as /usr/etc")
	}
	root, ok := b.main.Root()
	if !ok || len(b.stack) != 0 {
		return ostree.DirRef{}, errors.New("the tree was not finished (internal error: directories left open)")
	}
	return root, nil
}
