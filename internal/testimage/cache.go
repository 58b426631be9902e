package testimage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CacheEnv names the directory where Cached keeps generated benchmark
// images between runs; DefaultCacheDir is used when it is unset.
const (
	CacheEnv        = "CFS_BENCH_CACHE"
	DefaultCacheDir = "/var/tmp/cfs-bench-cache"
)

// CacheTag is the tag of the image in a cached OCI layout.
const CacheTag = "latest"

// Stats describe a generated image's merged tree.
type Stats struct {
	Entries  int   // paths in the merged tree, the root not counted
	Files    int   // regular files, each name of a hardlink counted
	Dirs     int   //
	Symlinks int   //
	Bytes    int64 // content of the regular files, hardlinks once
	// BlobBytes is the size of the layer blobs as stored.
	BlobBytes      int64
	ManifestDigest string
}

// CachedImage is a generated image kept on disk for benchmarks.
type CachedImage struct {
	// Layout is an OCI image layout holding the image as CacheTag.
	Layout string
	// Ref names it for containers/image: "oci:<Layout>:latest".
	Ref   string
	Stats Stats

	opts Options
	dir  string // the cache entry, Layout's parent
}

func cacheRoot() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Cached returns the image opts describe as an OCI layout in the cache
// directory ($CFS_BENCH_CACHE, default /var/tmp/cfs-bench-cache),
// generating it the first time only: generating Scale100k and compressing
// its 3.7 GB takes minutes, writing it again in every benchmark would
// dominate the run. The entry's name is a hash of the options and of the
// generator's output (every member's path, metadata, size and content
// seed), so a change to the generator makes a new entry rather than
// returning a stale one. Concurrent callers, in one process or several,
// wait for the one that generates. The layout is read-only by convention:
// copy what a test modifies.
func Cached(tb testing.TB, opts Options) *CachedImage {
	tb.Helper()
	c, err := cached(opts)
	if err != nil {
		tb.Fatalf("cached benchmark image: %v", err)
	}
	return c
}

func cached(opts Options) (*CachedImage, error) {
	opts, b, err := describe(opts)
	if err != nil {
		return nil, err
	}
	root := cacheRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	key := cacheKey(opts, b)
	dir := filepath.Join(root, fmt.Sprintf("%s-%s", opts.Name, key))
	c := &CachedImage{Layout: filepath.Join(dir, "oci"), opts: opts, dir: dir}
	c.Ref = "oci:" + c.Layout + ":" + CacheTag

	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	statsFile := filepath.Join(dir, "stats.json")
	if data, err := os.ReadFile(statsFile); err == nil {
		if err := json.Unmarshal(data, &c.Stats); err != nil {
			return nil, fmt.Errorf("%s: %w", statsFile, err)
		}
		return c, nil
	}

	// Build under a temporary name and rename: a run killed half-way
	// leaves no entry that looks complete.
	os.RemoveAll(dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	blobDir := filepath.Join(tmp, "oci", "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return nil, err
	}
	// WriteOCILayout below finds the layer blobs in place and writes only
	// the manifest, the config and the index.
	img, err := generate(opts, b, blobDir)
	if err != nil {
		return nil, err
	}
	if err := img.WriteOCILayout(filepath.Join(tmp, "oci"), CacheTag); err != nil {
		return nil, err
	}
	c.Stats = img.Stats()
	data, err := json.MarshalIndent(c.Stats, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "stats.json"), data, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return c, nil
}

// Stats counts the merged tree's entries and bytes.
func (img *Image) Stats() Stats {
	s := Stats{Entries: len(img.tree), ManifestDigest: img.ManifestDigest.String()}
	seen := map[int]bool{}
	for _, e := range img.tree {
		switch e.Type {
		case TypeDir:
			s.Dirs++
		case TypeSymlink:
			s.Symlinks++
		case TypeRegular:
			s.Files++
			if !seen[e.inode] {
				seen[e.inode] = true
				s.Bytes += e.Size
			}
		}
	}
	for _, l := range img.Layers {
		s.BlobBytes += l.Size
	}
	return s
}

// Tree returns a directory holding the image's merged tree (owners,
// modes, xattrs, mtimes and hardlinks as ExpectedTree says), extracted
// once into the cache entry beside the layout, for peers that read a
// directory (ostree commit --tree=dir=, mkcomposefs). The extraction is
// written here from the expected tree, not by any unpacker under test.
// It needs root for the owners and the security.* xattrs.
func (c *CachedImage) Tree(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(c.dir, "tree")
	unlock, err := lockFile(c.dir + ".lock")
	if err != nil {
		tb.Fatal(err)
	}
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	_, b, err := describe(c.opts)
	if err != nil {
		tb.Fatal(err)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := extract(tmp, b.applier.tree); err != nil {
		os.RemoveAll(tmp)
		tb.Fatalf("extracting the benchmark image: %v", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// extract writes tree under root (created 0755). Directories get their
// mtimes last, deepest first, since creating their children changes them.
func extract(root string, tree Tree) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	paths := tree.Paths()
	inodes := map[int]string{}
	for _, p := range paths {
		e := tree[p]
		full := filepath.Join(root, p)
		var err error
		switch e.Type {
		case TypeDir:
			err = os.Mkdir(full, 0o700)
		case TypeSymlink:
			err = os.Symlink(e.Symlink, full)
		case TypeRegular:
			// The tree may not be finished (Hardlink unset), so the
			// inode numbers group the names; the first one extracted
			// carries the inode's metadata.
			if first, ok := inodes[e.inode]; ok {
				if err := os.Link(first, full); err != nil {
					return err
				}
				continue
			}
			inodes[e.inode] = full
			err = writeFile(full, e.Open())
		}
		if err != nil {
			return err
		}
		if err := setMetadata(full, e); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, p := range slices.Backward(paths) {
		if e := tree[p]; e.Type == TypeDir {
			if err := setTime(filepath.Join(root, p), e.ModTime, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// setMetadata sets owner, then mode (chown clears setuid), then xattrs
// (chown clears security.capability), then the mtime of non-directories.
func setMetadata(path string, e *Entry) error {
	if err := os.Lchown(path, e.UID, e.GID); err != nil {
		return err
	}
	if e.Type != TypeSymlink {
		if err := os.Chmod(path, fs.FileMode(e.Mode&0o777)|modeBits(e.Mode)); err != nil {
			return err
		}
	}
	for k, v := range e.Xattrs {
		if err := unix.Lsetxattr(path, k, []byte(v), 0); err != nil {
			return fmt.Errorf("xattr %s: %w", k, err)
		}
	}
	if e.Type == TypeDir {
		return nil
	}
	return setTime(path, e.ModTime, unix.AT_SYMLINK_NOFOLLOW)
}

func modeBits(m uint32) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

func setTime(path string, t time.Time, flags int) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, flags)
}

// cacheKey hashes what the image's bytes are made of: the name and
// version (which the config holds) and every member of every layer. Not
// the Options struct as such, so that a new option left at its zero value
// keeps existing entries valid.
func cacheKey(opts Options, b *builder) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q\n", opts.Name, opts.Version)
	var num [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(num[:], v)
		h.Write(num[:])
	}
	for _, l := range b.layers {
		fmt.Fprintf(h, "layer %s %s\n", l.mediaType, l.createdBy)
		for _, m := range l.members {
			fmt.Fprintf(h, "%q %d %t %o %d %d %d %q %q %v\n", m.path, m.typ, m.whiteout, m.mode, m.uid, m.gid, m.mtime.Unix(), m.linkname, m.hardlinkTo, m.xattrs)
			if c := m.content; c != nil {
				put(c.seed)
				put(uint64(c.size))
				put(uint64(c.kind))
				h.Write(c.literal)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// lockFile takes an exclusive flock on path (created if missing) and
// returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
