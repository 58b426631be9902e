// Package xattr reads a file's extended attributes without following a
// symlink, the way every store we write compares them.
package xattr

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// List returns every extended attribute of path (the link itself when it
// is a symlink). A filesystem without xattr support has none; an attribute
// removed while it is read is left out. Errors do not repeat the path: the
// caller names the file.
func List(path string) (map[string][]byte, error) {
	names, err := listNames(path)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, name := range names {
		v, err := Get(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

func listNames(path string) ([]string, error) {
	for {
		size, err := unix.Llistxattr(path, nil)
		if errors.Is(err, unix.ENOTSUP) || err == nil && size == 0 {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs: %w", err)
		}
		buf := make([]byte, size)
		size, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs: %w", err)
		}
		var names []string
		for _, n := range bytes.Split(buf[:size], []byte{0}) {
			if len(n) > 0 {
				names = append(names, string(n))
			}
		}
		return names, nil
	}
}

// Get returns the value of one attribute of path, not following a symlink.
func Get(path, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
