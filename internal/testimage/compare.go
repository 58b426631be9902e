package testimage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// CompareOptions relax CompareDir for trees whose producer legitimately
// drops some metadata.
type CompareOptions struct {
	// IgnoreModTime skips all mtimes (ostree checkouts set them to 0).
	// Mtimes of Implicit directories are never compared.
	IgnoreModTime bool
	// IgnoreDirModTime skips directory mtimes only; they are the first
	// casualty of unpacking a child after its directory.
	IgnoreDirModTime bool
	IgnoreOwner      bool
	IgnoreHardlinks  bool
	// Xattr picks the extended attributes to compare on both sides, for
	// example to leave out security.selinux on a labelling host or
	// trusted.overlay.* in an overlay upper directory. Nil compares all.
	Xattr func(name string) bool
	// Skip leaves paths (relative, slash-separated) out on both sides, and
	// for a directory everything below it.
	Skip func(path string) bool
}

// ExceptSELinux is a CompareOptions.Xattr filter for trees unpacked by
// containers/storage, which never applies security.selinux from a layer
// (pkg/archive's xattrsToIgnore: the host labels files itself).
func ExceptSELinux(name string) bool { return name != "security.selinux" }

// maxReportedDifferences keeps a badly broken unpack from producing
// megabytes of test output; the first differences tell the story.
const maxReportedDifferences = 40

// CompareDir checks the directory tree at root against t: the same paths,
// types, permission bits, owners, mtimes, xattrs, symlink targets, file
// contents and hardlink groups. It returns nil on a match, otherwise an
// error listing the differences. The root directory itself is not compared.
func (t Tree) CompareDir(root string, opts CompareOptions) error {
	c := &comparison{tree: t, opts: opts, inodes: map[string]inodeKey{}}
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, full)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if opts.Skip != nil && opts.Skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		seen[rel] = true
		want, ok := t[rel]
		if !ok {
			c.report(rel, "present on disk but not expected")
			if d.IsDir() {
				return filepath.SkipDir // its children would only repeat this
			}
			return nil
		}
		c.compareEntry(full, want)
		if d.IsDir() && want.Type != TypeDir {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range t.Paths() {
		if seen[p] || (opts.Skip != nil && skippedBelow(p, opts.Skip)) {
			continue
		}
		c.report(p, fmt.Sprintf("expected %s missing on disk", t[p].Type))
	}
	if !opts.IgnoreHardlinks {
		c.compareHardlinks()
	}
	if len(c.diffs) == 0 {
		return nil
	}
	msg := strings.Join(c.diffs, "\n  ")
	if c.dropped > 0 {
		msg += fmt.Sprintf("\n  ... and %d more", c.dropped)
	}
	return errors.New("tree differs from the image:\n  " + msg)
}

func skippedBelow(p string, skip func(string) bool) bool {
	for q := p; q != "."; q = filepath.Dir(q) {
		if skip(q) {
			return true
		}
	}
	return false
}

type inodeKey struct{ dev, ino uint64 }

type comparison struct {
	tree    Tree
	opts    CompareOptions
	inodes  map[string]inodeKey // regular files seen, for hardlink groups
	diffs   []string
	dropped int
}

func (c *comparison) report(p, what string) {
	if len(c.diffs) >= maxReportedDifferences {
		c.dropped++
		return
	}
	c.diffs = append(c.diffs, fmt.Sprintf("%q: %s", p, what))
}

func (c *comparison) compareEntry(full string, want *Entry) {
	p := want.Path
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		c.report(p, err.Error())
		return
	}
	got := fileType(st.Mode)
	if got != want.Type {
		c.report(p, fmt.Sprintf("is a %s, want %s", got, want.Type))
		return
	}
	if perm := st.Mode & 0o7777; perm != want.Mode {
		c.report(p, fmt.Sprintf("mode %04o, want %04o", perm, want.Mode))
	}
	if !c.opts.IgnoreOwner && (int(st.Uid) != want.UID || int(st.Gid) != want.GID) {
		c.report(p, fmt.Sprintf("owner %d:%d, want %d:%d", st.Uid, st.Gid, want.UID, want.GID))
	}
	compareTime := !c.opts.IgnoreModTime && !want.Implicit && !(c.opts.IgnoreDirModTime && want.Type == TypeDir)
	if mtime := time.Unix(st.Mtim.Unix()); compareTime && !mtime.Equal(want.ModTime) {
		c.report(p, fmt.Sprintf("mtime %s, want %s", mtime.UTC().Format(time.RFC3339Nano), want.ModTime.UTC().Format(time.RFC3339Nano)))
	}
	c.compareXattrs(full, want)

	switch want.Type {
	case TypeSymlink:
		target, err := os.Readlink(full)
		if err != nil {
			c.report(p, err.Error())
		} else if target != want.Symlink {
			c.report(p, fmt.Sprintf("symlink to %q, want %q", target, want.Symlink))
		}
	case TypeRegular:
		c.inodes[p] = inodeKey{st.Dev, st.Ino}
		if st.Size != want.Size {
			c.report(p, fmt.Sprintf("size %d, want %d", st.Size, want.Size))
			return
		}
		if d, err := fileDigest(full); err != nil {
			c.report(p, err.Error())
		} else if d != want.Digest {
			c.report(p, fmt.Sprintf("content %s, want %s", d, want.Digest))
		}
	}
}

func fileType(mode uint32) FileType {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return TypeDir
	case syscall.S_IFREG:
		return TypeRegular
	case syscall.S_IFLNK:
		return TypeSymlink
	}
	return 0
}

func fileDigest(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func (c *comparison) compareXattrs(full string, want *Entry) {
	got, err := readXattrs(full)
	if err != nil {
		c.report(want.Path, err.Error())
		return
	}
	keep := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if c.opts.Xattr == nil || c.opts.Xattr(k) {
				out[k] = v
			}
		}
		return out
	}
	g, w := keep(got), keep(want.Xattrs)
	if !maps.Equal(g, w) {
		c.report(want.Path, fmt.Sprintf("xattrs %s, want %s", formatXattrs(g), formatXattrs(w)))
	}
}

func formatXattrs(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// readXattrs lists a path's extended attributes without following a
// symlink.
func readXattrs(path string) (map[string]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	names := make([]byte, size)
	size, err = unix.Llistxattr(path, names)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range bytes.Split(names[:size], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		n := string(name)
		vsize, err := unix.Lgetxattr(path, n, nil)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", n, err)
		}
		value := make([]byte, vsize)
		vsize, err = unix.Lgetxattr(path, n, value)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", n, err)
		}
		out[n] = string(value[:vsize])
	}
	return out, nil
}

// compareHardlinks checks that on-disk inode sharing partitions the files
// exactly like the expected Hardlink groups.
func (c *comparison) compareHardlinks() {
	byInode := map[inodeKey][]string{}
	for p, k := range c.inodes {
		byInode[k] = append(byInode[k], p)
	}
	for _, p := range slices.Sorted(maps.Keys(c.inodes)) {
		want := c.tree[p].Hardlink
		sharing := byInode[c.inodes[p]]
		for _, q := range sharing {
			if q > p && (want == "" || c.tree[q].Hardlink != want) {
				c.report(p, fmt.Sprintf("shares its inode with %q, want separate files", q))
			}
		}
		if want != "" && want != p {
			if k, ok := c.inodes[want]; ok && k != c.inodes[p] {
				c.report(p, fmt.Sprintf("is not a hardlink to %q", want))
			}
		}
	}
}
