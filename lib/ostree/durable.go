package ostree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/beneath"
)

// Durability, as ostree itself does it: an object is prepared in tmp/
// and gets its name in objects/XX/ only after its bytes (and its inode's
// size, mode, owner and xattrs) are on disk, or a power cut can leave a
// 0-byte dirtree or file under its checksum, which a re-run would trust
// and commit. Objects are kept pending and named in batches
// (atomicfile.Batch): one syncfs per batch, then the links. SetRef
// flushes, syncs again, and only then writes the ref.
//
// An object already stored is checked before it is reused: its type and
// size for file objects, its bytes for dirtree, dirmeta and commit objects
// (which are small and which the writer has in memory). A wrong one is
// replaced atomically.

type pendingObject struct {
	t       *tmpObject
	path    string // ObjectPath
	check   func() error
	replace bool
}

// writeDirs opens, once, tmp/ and objects/ beneath the repository
// without following symlinks, and returns tmp/'s descriptor.
func (r *Repo) writeDirs() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tmpFD >= 0 {
		return r.tmpFD, nil
	}
	tmp, err := beneath.OpenDir(r.dirFD, "tmp")
	if err != nil {
		return -1, fmt.Errorf("ostree repo %s: %w", r.path, err)
	}
	objects, err := beneath.OpenDir(r.dirFD, "objects")
	if err != nil {
		unix.Close(tmp)
		return -1, fmt.Errorf("ostree repo %s: %w", r.path, err)
	}
	r.tmpFD, r.objectsFD = tmp, objects
	return tmp, nil
}

func (r *Repo) objectDir(checksum string) (int, error) {
	if _, err := r.writeDirs(); err != nil {
		return -1, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if fd, ok := r.subdirs[checksum[:2]]; ok {
		return fd, nil
	}
	// 0777 and the umask decide, as in ostree.
	fd, err := beneath.MkdirAll(r.objectsFD, checksum[:2], 0o777)
	if err != nil {
		return -1, fmt.Errorf("%s/objects/%w", r.path, err)
	}
	r.subdirs[checksum[:2]] = fd
	return fd, nil
}

func (r *Repo) isPending(path string) bool {
	return r.pending.Pending(path, nil)
}

// queue makes tmp the object at path at the next Flush; check tells
// whether a file already there is intact. It reports false (and drops
// tmp) when the object is already pending.
func (r *Repo) queue(tmp *tmpObject, path string, check func() error, replace bool) (bool, error) {
	added, full := r.pending.Add(path, &pendingObject{t: tmp, path: path, check: check, replace: replace})
	if !added {
		tmp.discard()
		return false, nil
	}
	// A full batch is flushed by the writer that filled it, unless a
	// Flush is already under way: that one syncs and names most of what
	// is queued, and a writer waiting for it would only flush the few
	// objects added meanwhile, one sync each. Every pending object is an
	// open file, so at twice the limit the writer waits and flushes.
	if full && (r.flushing.Load() == 0 || r.pending.Len() >= 2*r.pending.Limit()) {
		return true, r.Flush()
	}
	return true, nil
}

// Flush makes every pending object durable (one syncfs) and then names
// it. SetRef calls it; a writer whose objects another process will use
// (cfs-clone before cfs-ostree-import) calls it before it says it is done.
func (r *Repo) Flush() error {
	r.flushing.Add(1)
	defer r.flushing.Add(-1)
	return r.pending.Flush(r.Sync, func(p *pendingObject) error {
		if err := r.nameObject(p); err != nil {
			return fmt.Errorf("%s/%s: %w", r.path, p.path, err)
		}
		return nil
	}, func(p *pendingObject) { p.t.discard() })
}

func (r *Repo) nameObject(p *pendingObject) error {
	checksum := p.path[len("objects/") : len("objects/")+2]
	dirfd, err := r.objectDir(checksum)
	if err != nil {
		return err
	}
	base := p.path[len("objects/xx/"):]
	if !p.replace {
		err := p.t.link(dirfd, base)
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
		if p.check() == nil {
			return nil // another writer stored it meanwhile
		}
	}
	return p.t.replace(dirfd, base)
}

// statStored lstats a stored object without following a symlink.
func (r *Repo) statStored(path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(r.dirFD, path, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return st, &os.PathError{Op: "lstat", Path: r.path + "/" + path, Err: err}
	}
	return st, nil
}

// checkStoredFile checks a stored regular file or symlink object: its
// type (a symlink in a bare repo is a symlink, everything else a regular
// file) and its size (content, or target length; bare-user symlinks hold
// the target and a NUL).
func (r *Repo) checkStoredFile(checksum string, size int64, symlink bool) error {
	path := ObjectPath(checksum, ObjectFile)
	st, err := r.statStored(path)
	if err != nil {
		return err
	}
	wantType := uint32(unix.S_IFREG)
	if symlink && r.mode == ModeBare {
		wantType = unix.S_IFLNK
	} else if symlink && r.mode == ModeBareUser {
		size++
	}
	if st.Mode&unix.S_IFMT != wantType {
		return fmt.Errorf("%s/%s has the wrong file type (damaged object)", r.path, path)
	}
	if st.Size != size {
		return fmt.Errorf("%s/%s is %d bytes, want %d (damaged object)", r.path, path, st.Size, size)
	}
	return nil
}

// DamagedSize is CheckFileObject's error for the regular file object
// checksum in the repository at repoPath that holds have bytes, not want.
func DamagedSize(repoPath, checksum string, have, want int64) error {
	return fmt.Errorf("%s/%s is %d bytes, want %d (damaged object)", repoPath, ObjectPath(checksum, ObjectFile), have, want)
}

// CheckFileObject checks, cheaply, that a stored regular file object is
// intact enough to be committed: a regular file of the content's size.
// A pending object is taken as intact.
func (r *Repo) CheckFileObject(checksum string, size int64) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("invalid checksum %q", checksum)
	}
	if r.isPending(ObjectPath(checksum, ObjectFile)) {
		return nil
	}
	return r.checkStoredFile(checksum, size, false)
}

// CheckSymlinkObject is CheckFileObject for a symlink object.
func (r *Repo) CheckSymlinkObject(checksum, target string) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("invalid checksum %q", checksum)
	}
	if r.isPending(ObjectPath(checksum, ObjectFile)) {
		return nil
	}
	return r.checkStoredFile(checksum, int64(len(target)), true)
}

// checkStoredBytes compares a stored metadata object with the bytes it
// must hold.
func (r *Repo) checkStoredBytes(path string, data []byte) error {
	fd, err := unix.Openat(r.dirFD, path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: r.path + "/" + path, Err: err}
	}
	f := os.NewFile(uintptr(fd), r.path+"/"+path)
	defer f.Close()
	got := make([]byte, len(data)+1)
	n, err := readFull(f, got)
	if err != nil {
		return err
	}
	if !bytes.Equal(got[:n], data) {
		return fmt.Errorf("%s/%s does not hold the bytes its checksum names (damaged object)", r.path, path)
	}
	return nil
}

func readFull(f *os.File, buf []byte) (int, error) {
	n, err := io.ReadFull(f, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil // a short file is what the caller compares
	}
	return n, err
}

// readObject reads an object's bytes, pending or stored.
func (r *Repo) readObject(path string) ([]byte, error) {
	var f *os.File
	var err error
	ok := r.pending.Pending(path, func(p *pendingObject) { f, err = p.t.open() })
	if !ok {
		return os.ReadFile(r.path + "/" + path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
