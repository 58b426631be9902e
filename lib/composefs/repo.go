// Package composefs is a composefs-rs compatible repository: objects named
// by their fs-verity digest, splitstreams, EROFS images and the refs that
// keep them alive through composefs-rs garbage collection. The on-disk
// layout is composefs-rs's (docs/composefs.md); everything else in
// cfs reaches the repository through this package.
package composefs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/beneath"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// Repository is an open composefs repository. It holds a shared flock on
// the repository directory for its lifetime, as composefs-rs does, so a
// garbage collection (which takes it exclusively) never runs while we
// write objects that nothing references yet. Its methods are safe for
// concurrent use.
type Repository struct {
	path     string
	dir      *os.File
	alg      fsverity.Algorithm
	writable bool
	// secure means meta.json has fs-verity enabled: every object must then
	// carry verity too. Otherwise verity is enabled where the filesystem
	// can and digests are computed in userspace.
	secure bool
	// verityOn is set once an object here got fs-verity: existing objects
	// are then checked against the kernel's measurement too.
	verityOn atomic.Bool
	// verityOff is set once enabling fs-verity on an object here found
	// the filesystem without it (never in secure mode, which fails
	// instead): later objects do not try again.
	verityOff atomic.Bool
	// recordsOff is set once a content record could not be set here (not
	// root, no trusted xattrs on the filesystem): later objects do not
	// try.
	recordsOff atomic.Bool
	// firstTemp is set once this handle made its first temporary file
	// in objects/ (see worldReadable).
	firstTemp atomic.Bool

	// objects is objects/ opened beneath the root (no symlink followed),
	// or -1 with objectsErr saying why writes cannot happen.
	objects    int
	objectsErr error

	mu      sync.Mutex
	subdirs map[byte]int // objects/XX, opened beneath objects/
	// made marks the objects/XX this handle created, and named holds
	// (the first 8 bytes of) the ids it named in them: an object missing
	// from named cannot have been there before this handle made its
	// directory, so the lookup for an existing one is skipped (see
	// mayBeStored).
	made  [256]bool
	named map[uint64]struct{}
	// pending holds the objects written but not yet durable nor named.
	pending *atomicfile.Batch[*pendingObject]

	// Background flushing (FlushInBackground): async counts the callers
	// that turned it on, flushing is set while a flush runs on its own
	// goroutine (bg waits for it), and bgErr keeps its error for the
	// next Flush or object write.
	async    atomic.Int32
	flushing atomic.Bool
	bg       sync.WaitGroup
	bgMu     sync.Mutex
	bgErr    error
}

// ErrNotRepository is returned by Open for a directory without meta.json.
var ErrNotRepository = errors.New("not a composefs repository (no meta.json)")

// subdirNames are the directories a repository has from its creation.
var subdirNames = []string{"objects", "streams", "images"}

// Create makes a repository at path, or opens the one there if its
// configuration is the same. The directory is created with mode 0700, as
// bootc does for /sysroot/composefs.
//
// A crash leaves nothing or a usable repository: the subdirectories are
// made and made durable first, and meta.json, which is what makes a
// directory a repository, is published last (fsynced, then linked).
func Create(path string, alg fsverity.Algorithm) (*Repository, error) {
	if alg != fsverity.SHA256 && alg != fsverity.SHA512 {
		return nil, fmt.Errorf("composefs repository %s: unsupported algorithm %v", path, alg)
	}
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating composefs repository: %w", err)
	}
	root, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("creating composefs repository: %w", err)
	}
	defer root.Close()
	if _, err := makeSubdirs(int(root.Fd()), path); err != nil {
		return nil, err
	}
	if err := writeMeta(int(root.Fd()), path, newMeta(alg).encode(), alg); err != nil {
		return nil, err
	}
	// The repository's own name, for a crash right after Create.
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	if r.alg != alg {
		r.Close()
		return nil, fmt.Errorf("composefs repository %s already exists with algorithm %v, not %v", path, r.alg, alg)
	}
	return r, nil
}

// makeSubdirs creates the missing subdirectories (never through a
// symlink) and, if it made any, fsyncs the repository directory so that
// they are durable before anything is written into them.
func makeSubdirs(root int, path string) (made bool, err error) {
	for _, d := range subdirNames {
		err := unix.Mkdirat(root, d, 0o755)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return made, fmt.Errorf("composefs repository %s: mkdir %s: %w", path, d, err)
		}
		made = true
	}
	if made {
		if err := unix.Fsync(root); err != nil {
			return made, fmt.Errorf("composefs repository %s: fsync: %w", path, err)
		}
	}
	return made, nil
}

// writeMeta publishes meta.json whole or not at all: O_TMPFILE, write,
// fsync, try to enable verity (secure mode), link into place. An existing
// meta.json is fine when it is byte-identical.
func writeMeta(root int, repo string, data []byte, alg fsverity.Algorithm) error {
	target := filepath.Join(repo, "meta.json")
	if existing, err := os.ReadFile(target); err == nil {
		if !bytes.Equal(existing, data) {
			if _, _, _, perr := parseMeta(existing); perr != nil {
				return fmt.Errorf("%s: %w", target, perr)
			}
		}
		return nil
	}
	f, err := publishFile(root, repo, "meta.json", data, alg)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil // a concurrent init won; Open checks what it wrote
		}
		return fmt.Errorf("writing %s: %w", target, err)
	}
	f.Close()
	if err := unix.Fsync(root); err != nil {
		return fmt.Errorf("fsync %s: %w", repo, err)
	}
	return nil
}

// Open opens an existing repository and takes the shared lock. A
// writable repository missing one of its subdirectories (left so by a
// crash during an older Create) gets it back.
func Open(path string) (*Repository, error) {
	data, err := os.ReadFile(filepath.Join(path, "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNotRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("opening composefs repository: %w", err)
	}
	_, alg, writable, err := parseMeta(data)
	if err != nil {
		return nil, fmt.Errorf("%s/%w", path, err)
	}
	dir, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening composefs repository: %w", err)
	}
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_SH); err != nil {
		dir.Close()
		return nil, fmt.Errorf("locking composefs repository %s: %w", path, err)
	}
	r := &Repository{path: path, dir: dir, alg: alg, writable: writable, objects: -1,
		subdirs: map[byte]int{}, pending: atomicfile.NewBatchLimit[*pendingObject](pendingLimit)}
	// A batch is named only after its syncfs, while the writers may wait
	// for it (pendingLimit): one link after another on one goroutine
	// took about as long as the syncfs itself.
	r.pending.SetNamers(runtime.GOMAXPROCS(0))
	if writable {
		// Only a writer can repair; a reader of a read-only
		// filesystem (EROFS, EACCES) needs no repair to read.
		if _, err := makeSubdirs(int(dir.Fd()), path); err != nil && !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EACCES) {
			dir.Close()
			return nil, err
		}
	}
	if fd, err := beneath.OpenDir(int(dir.Fd()), "objects"); err != nil {
		r.objectsErr = fmt.Errorf("composefs repository %s: %w", path, err)
	} else {
		r.objects = fd
	}
	if mf, err := os.Open(filepath.Join(path, "meta.json")); err == nil {
		_, _, merr := fsverity.Measure(mf)
		r.secure = merr == nil
		mf.Close()
	}
	return r, nil
}

// Close names and makes durable the objects still pending (they are
// whole, and a later run can reuse them), then releases the lock.
func (r *Repository) Close() error {
	if r.dir == nil {
		return nil
	}
	err := r.Flush()
	r.bg.Wait()
	r.mu.Lock()
	for _, fd := range r.subdirs {
		unix.Close(fd)
	}
	r.subdirs = nil
	r.mu.Unlock()
	if r.objects >= 0 {
		unix.Close(r.objects)
		r.objects = -1
	}
	if cerr := r.dir.Close(); err == nil { // closing the descriptor drops the flock
		err = cerr
	}
	r.dir = nil
	return err
}

// Path is the repository directory.
func (r *Repository) Path() string { return r.path }

// Algorithm is the fs-verity algorithm naming objects.
func (r *Repository) Algorithm() fsverity.Algorithm { return r.alg }

// Secure reports whether the repository requires fs-verity on objects.
func (r *Repository) Secure() bool { return r.secure }

func (r *Repository) checkWritable() error {
	if !r.writable {
		return fmt.Errorf("composefs repository %s has features this tool cannot write; opened read-only", r.path)
	}
	return nil
}

// Sync makes everything written to the repository's filesystem durable
// (syncfs). It does not name pending objects: Flush does.
func (r *Repository) Sync() error {
	if err := unix.Syncfs(int(r.dir.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", r.path, err)
	}
	return nil
}

// ParseID parses a lowercase hex object id of the repository's algorithm.
func (r *Repository) ParseID(s string) ([]byte, error) {
	id, err := hex.DecodeString(s)
	if err != nil || len(id) != r.alg.Size() || hex.EncodeToString(id) != s {
		return nil, fmt.Errorf("%q is not a %d-digit lowercase hex %v fs-verity digest", s, 2*r.alg.Size(), r.alg)
	}
	return id, nil
}
