package ostree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/beneath"
)

// SetRef points refs/heads/<ref> at commit. The commit must already be in
// the repository; the pending objects are flushed (made durable, then
// named) and the filesystem synced again (syncfs, as ostree does when a
// transaction commits), so a ref never survives a crash that lost the
// objects it names or their names. The ref file itself is replaced
// atomically and durably, in refs/heads reached without following
// symlinks.
func (r *Repo) SetRef(ref, commit string) error {
	if err := ValidateRefName(ref); err != nil {
		return err
	}
	if !ValidChecksum(commit) {
		return fmt.Errorf("ref %s: invalid commit checksum %q", ref, commit)
	}
	have, err := r.HasObject(commit, ObjectCommit)
	if err != nil {
		return err
	}
	if !have {
		return fmt.Errorf("ref %s: commit %s is not in %s", ref, commit, r.path)
	}
	if err := r.beginWrite(); err != nil {
		return err
	}
	if err := r.Flush(); err != nil {
		return err
	}
	if err := r.Sync(); err != nil {
		return err
	}
	dir := filepath.Join("refs", "heads", filepath.Dir(ref))
	dirfd, err := beneath.MkdirAll(r.dirFD, filepath.Clean(dir), 0o775)
	if err != nil {
		return fmt.Errorf("ref %s: %w", ref, err)
	}
	defer unix.Close(dirfd)
	if err := atomicfile.WriteFileAt(dirfd, filepath.Join(r.path, dir), filepath.Base(ref), []byte(commit+"\n"), 0o644); err != nil {
		return fmt.Errorf("ref %s: %w", ref, err)
	}
	return nil
}

// Sync flushes the repository's filesystem.
func (r *Repo) Sync() error {
	fd, err := unix.Openat(r.dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", r.path, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", r.path, err)
	}
	return nil
}

// ResolveRef returns the commit refs/heads/<ref> points at, or ok=false if
// there is no such ref.
func (r *Repo) ResolveRef(ref string) (commit string, ok bool, err error) {
	if err := ValidateRefName(ref); err != nil {
		return "", false, err
	}
	data, err := os.ReadFile(filepath.Join(r.path, "refs", "heads", ref))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	commit = strings.TrimSpace(string(data))
	if !ValidChecksum(commit) {
		return "", false, fmt.Errorf("ref %s holds %q, not a checksum", ref, commit)
	}
	return commit, true, nil
}

// DeleteRef removes refs/heads/<ref>; a missing ref is not an error.
func (r *Repo) DeleteRef(ref string) error {
	if err := ValidateRefName(ref); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(r.path, "refs", "heads", ref))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ref %s: %w", ref, err)
	}
	return nil
}

// ListRefs returns the names of all refs under refs/heads with the given
// prefix ("" for all), e.g. ImageRefPrefix.
func (r *Repo) ListRefs(prefix string) ([]string, error) {
	root := filepath.Join(r.path, "refs", "heads")
	var refs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			name, _ := filepath.Rel(root, p)
			if strings.HasPrefix(name, prefix) && ValidateRefName(name) == nil {
				refs = append(refs, name)
			}
		}
		return nil
	})
	return refs, err
}
