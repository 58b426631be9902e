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
	return list(
		func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) },
		func(name string, buf []byte) (int, error) { return unix.Lgetxattr(path, name, buf) })
}

// ListFD is List of the file open as fd. It saves a walk of a path
// whose file is open anyway (a directory walk that reads the file).
func ListFD(fd int) (map[string][]byte, error) {
	return list(
		func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		func(name string, buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) })
}

func list(listx func([]byte) (int, error), getx func(string, []byte) (int, error)) (map[string][]byte, error) {
	names, err := listNames(listx)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, name := range names {
		v, err := get(getx, name)
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

func listNames(listx func([]byte) (int, error)) ([]string, error) {
	for {
		size, err := listx(nil)
		if errors.Is(err, unix.ENOTSUP) || err == nil && size == 0 {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs: %w", err)
		}
		buf := make([]byte, size)
		size, err = listx(buf)
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
	return get(func(name string, buf []byte) (int, error) { return unix.Lgetxattr(path, name, buf) }, name)
}

func get(getx func(string, []byte) (int, error), name string) ([]byte, error) {
	for {
		size, err := getx(name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := getx(name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
