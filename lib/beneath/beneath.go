// Package beneath opens and creates directories below a store's root
// without following symlinks. A symlink planted inside a repository
// (objects/XX, images, streams/refs/oci, refs/heads) must not make a
// writer put files outside it: every directory we write into is reached
// from the root's descriptor, one real directory at a time, and the
// final names are then created relative to that directory's descriptor.
package beneath

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSymlink is wrapped by the errors of OpenDir and MkdirAll when a
// component is a symlink or not a directory.
var ErrSymlink = errors.New("is a symlink or not a directory (refusing to leave the store)")

func components(rel string) ([]string, error) {
	if rel == "" || rel == "." {
		return nil, nil
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, fmt.Errorf("path %q: not a clean relative path", rel)
		}
	}
	return parts, nil
}

// OpenDir opens the directory rel below the directory open as root,
// refusing symlinks and ".." anywhere on the way: openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it (5.6),
// otherwise one component at a time with O_NOFOLLOW. The descriptor is
// opened read-only, so that it can also be fsynced.
func OpenDir(root int, rel string) (int, error) {
	parts, err := components(rel)
	if err != nil {
		return -1, err
	}
	if len(parts) == 0 {
		return unix.Openat(root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(root, rel, &how)
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("%s: %w", rel, ErrSymlink)
	case !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM):
		// EPERM: a seccomp filter that does not know openat2.
		return -1, fmt.Errorf("%s: %w", rel, err)
	}
	return walk(root, parts, false, 0)
}

// MkdirAll opens the directory rel below root like OpenDir, creating the
// missing components with perm (the umask applies).
func MkdirAll(root int, rel string, perm uint32) (int, error) {
	parts, err := components(rel)
	if err != nil {
		return -1, err
	}
	return walk(root, parts, true, perm)
}

func walk(root int, parts []string, mkdir bool, perm uint32) (int, error) {
	fd, err := unix.Openat(root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for i, p := range parts {
		next, err := unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && mkdir {
			if err = unix.Mkdirat(fd, p, perm); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		sofar := strings.Join(parts[:i+1], "/")
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s: %w", sofar, ErrSymlink)
		}
		if err != nil {
			return -1, fmt.Errorf("%s: %w", sofar, err)
		}
		fd = next
	}
	return fd, nil
}
