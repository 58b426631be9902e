// Package ostree writes ostree repositories without libostree: GVariant
// objects in normal form, content checksums, bare and bare-user file
// objects placed atomically (the bytes may be reflinked in by the caller),
// directory trees, commits and refs. Everything it writes is meant to be
// accepted by `ostree fsck`, `ostree checkout` and `ostree admin deploy`,
// and to carry the same checksums `ostree commit` would give the same tree.
//
// Writing an image, in the order that keeps a crash harmless:
//
//	repo, _ := ostree.Open(path)                 // or Create(path, ostree.ModeBare)
//	defer repo.Close()                           // releases the shared .lock
//	csum, _, _ := repo.WriteFileObject(meta, fillByFICLONE, "", 0)
//	lnk, _, _ := repo.WriteSymlinkObject(meta, target)
//	w := repo.NewTreeWriter()                    // pre-order: EnterDir, AddFile..., LeaveDir
//	root, _ := w.LeaveDir()                      // after the root's last entry
//	commit, _ := repo.WriteCommit(ostree.Commit{RootTree: root.Tree, RootMeta: root.Meta, ...})
//	ref, _ := ostree.ImageRef("docker://quay.io/org/os:42")
//	_ = repo.SetRef(ref, commit)                 // flush, syncfs, then atomic ref update
package ostree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
)

// RepoMode is the [core] mode of a repository.
type RepoMode string

const (
	ModeBare         RepoMode = "bare"
	ModeBareUser     RepoMode = "bare-user"
	ModeBareUserOnly RepoMode = "bare-user-only"
	// ModeArchive repositories can be opened (to read their config) but
	// not written: their objects are compressed and nothing here needs them.
	ModeArchive RepoMode = "archive-z2"
)

func parseRepoMode(s string) (RepoMode, error) {
	switch s {
	case "bare", "bare-user", "bare-user-only", "archive-z2":
		return RepoMode(s), nil
	case "archive":
		return ModeArchive, nil
	}
	return "", fmt.Errorf("unsupported repository mode %q", s)
}

// Repo is an open repository. Methods are safe for concurrent use.
type Repo struct {
	path   string
	dirFD  int // O_PATH handle on the repo directory; all I/O is relative to it
	mode   RepoMode
	config *KeyFile

	lockMu sync.Mutex
	lock   *repoLock // shared lock taken at the first write, held until Close
	closed bool

	// Writing (durable.go): tmp/ and objects/ opened beneath the repo at
	// the first write, objects/XX as needed, and the objects prepared but
	// not yet durable nor named.
	mu        sync.Mutex
	tmpFD     int
	objectsFD int
	subdirs   map[string]int
	pending   *atomicfile.Batch[*pendingObject]
	flushing  atomic.Int32 // Flushes under way
}

// ErrNotRepository is matched (errors.Is) by the error of Open for a path
// that does not exist or holds no objects/ directory.
var ErrNotRepository = errors.New("not an ostree repository")

// Open opens the repository at path.
func Open(path string) (*Repo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("opening ostree repo %s: %w (%w)", abs, ErrNotRepository, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening ostree repo %s: %w", abs, err)
	}
	r := &Repo{path: abs, dirFD: fd, tmpFD: -1, objectsFD: -1,
		subdirs: map[string]int{}, pending: atomicfile.NewBatch[*pendingObject]()}
	// Objects fall into 256 objects/XX directories, so concurrent links
	// rarely wait on the same directory.
	r.pending.SetNamers(2 * runtime.GOMAXPROCS(0))
	if err := r.load(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("opening ostree repo %s: %w", abs, err)
	}
	return r, nil
}

func (r *Repo) load() error {
	var st unix.Stat_t
	if err := unix.Fstatat(r.dirFD, "objects", &st, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w (objects/: %w)", ErrNotRepository, err)
		}
		return fmt.Errorf("objects/: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(r.path, "config"))
	if err != nil {
		return err
	}
	kf, err := ParseKeyFile(data)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if v, ok := kf.Get("core", "repo_version"); !ok || v != "1" {
		return fmt.Errorf("config: invalid repository version %q", v)
	}
	modeStr, ok := kf.Get("core", "mode")
	if !ok {
		modeStr = "bare"
	}
	mode, err := parseRepoMode(modeStr)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	r.config, r.mode = kf, mode
	return nil
}

// Create makes a repository at path with the layout `ostree init` gives.
// If a repository already exists there with the same mode, it is opened.
func Create(path string, mode RepoMode) (*Repo, error) {
	if _, err := parseRepoMode(string(mode)); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(path, "objects")); err == nil {
		r, err := Open(path)
		if err != nil {
			return nil, err
		}
		if r.mode != mode {
			r.Close()
			return nil, fmt.Errorf("ostree repo %s already exists with mode %s, not %s", path, r.mode, mode)
		}
		return r, nil
	}
	if err := os.MkdirAll(path, 0o775); err != nil {
		return nil, fmt.Errorf("creating ostree repo: %w", err)
	}
	config := fmt.Sprintf("[core]\nrepo_version=1\nmode=%s\n", mode)
	if err := atomicfile.WriteFile(path, filepath.Join(path, "config"), []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("creating ostree repo %s: %w", path, err)
	}
	// objects/ last: its presence is what makes a directory a repository,
	// so an interrupted Create is retried rather than half-opened. The
	// rest is made durable before it, and it before Create returns.
	for _, d := range []string{"tmp", "extensions", "state", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "objects"} {
		if d == "objects" {
			for _, dir := range []string{filepath.Join(path, "refs"), path} {
				if err := atomicfile.SyncDir(dir); err != nil {
					return nil, fmt.Errorf("creating ostree repo %s: %w", path, err)
				}
			}
		}
		if err := os.Mkdir(filepath.Join(path, d), 0o775); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("creating ostree repo %s: %w", path, err)
		}
	}
	if err := atomicfile.SyncDir(path); err != nil {
		return nil, fmt.Errorf("creating ostree repo %s: %w", path, err)
	}
	if mode == ModeBareUser {
		// As ostree init does: bare-user is useless where user xattrs
		// cannot be stored, so fail now rather than at the first object.
		probe := filepath.Join(path, "tmp", ".cfs-xattr-probe")
		f, err := os.Create(probe)
		if err != nil {
			return nil, err
		}
		f.Close()
		err = unix.Setxattr(probe, "user.ostreemeta", []byte{0}, 0)
		os.Remove(probe)
		if err != nil {
			return nil, fmt.Errorf("creating bare-user repo %s: filesystem refuses user xattrs: %w", path, err)
		}
	}
	return Open(path)
}

// Path is the repository's absolute path.
func (r *Repo) Path() string { return r.path }

// Mode is the repository's [core] mode.
func (r *Repo) Mode() RepoMode { return r.mode }

// ComposefsUnified reports [composefs] unified=true, the flag bootc sets
// when the ostree repo is bound to the composefs repository.
func (r *Repo) ComposefsUnified() (bool, error) {
	return r.config.GetBool("composefs", "unified", false)
}

// SetConfig sets one config key and rewrites the config atomically.
func (r *Repo) SetConfig(group, key, value string) error {
	r.config.Set(group, key, value)
	if err := atomicfile.WriteFile(r.path, filepath.Join(r.path, "config"), r.config.Bytes(), 0o644); err != nil {
		return fmt.Errorf("ostree repo %s config: %w", r.path, err)
	}
	return nil
}

// Close names the objects still pending (they are whole; a re-run can
// reuse them), then releases the repository lock and handles.
func (r *Repo) Close() error {
	r.lockMu.Lock()
	closed := r.closed
	r.lockMu.Unlock()
	if closed {
		return nil
	}
	err := r.Flush()
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	r.closed = true
	r.mu.Lock()
	for _, fd := range r.subdirs {
		unix.Close(fd)
	}
	for _, fd := range []int{r.tmpFD, r.objectsFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	r.subdirs, r.tmpFD, r.objectsFD = nil, -1, -1
	r.mu.Unlock()
	if r.lock != nil {
		err = r.lock.release()
		r.lock = nil
	}
	if cerr := unix.Close(r.dirFD); err == nil {
		err = cerr
	}
	return err
}

// lockTimeoutSecs mirrors [core] lock-timeout-secs (ostree's default: 300).
func (r *Repo) lockTimeoutSecs() int {
	if v, ok := r.config.Get("core", "lock-timeout-secs"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return 300
}

// LockShared takes the shared repository lock now instead of at the first
// write, and holds it until Close. A reader that checks objects another
// process wrote but has not yet referenced (cfs-ostree-import after
// cfs-clone) needs it before its first check, or a prune could remove
// them in between. The wait honours [core] lock-timeout-secs.
func (r *Repo) LockShared() error { return r.beginWrite() }

// beginWrite takes the shared repo lock once, before the first object is
// written, and keeps it until Close: a concurrent prune takes the lock
// exclusively, so it cannot delete objects we wrote but have not yet
// referenced from a commit or ref.
func (r *Repo) beginWrite() error {
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	if r.closed {
		return fmt.Errorf("ostree repo %s is closed", r.path)
	}
	switch r.mode {
	case ModeBare, ModeBareUser, ModeBareUserOnly:
	default:
		return fmt.Errorf("ostree repo %s: writing %s repositories is not supported", r.path, r.mode)
	}
	if r.lock != nil {
		return nil
	}
	if enabled, err := r.config.GetBool("core", "locking", true); err == nil && !enabled {
		r.lock = &repoLock{fd: -1}
		return nil
	}
	l, err := acquireSharedLock(r.dirFD, r.lockTimeoutSecs())
	if err != nil {
		return fmt.Errorf("ostree repo %s: %w", r.path, err)
	}
	r.lock = l
	return nil
}
