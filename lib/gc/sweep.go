package gc

import (
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// sweeper is composefs-rs's Repository::gc: mark from the refs, sweep
// objects/XX/, then prune the symlinks left broken.
type sweeper struct {
	repo   *composefs.Repository
	root   string
	live   map[string]bool   // "XX/rest"
	stream map[string]string // object name → streams/<name>, for named refs
	walked map[string]bool
	// untagged: tag symlinks a dry run would have removed; they are
	// neither roots nor counted as pruned.
	untagged map[string]bool
}

// objectOf resolves a symlink chain below the repository to the object it
// ends at ("XX/rest"); ok is false for a broken chain or one that ends
// outside objects/.
func (s *sweeper) objectOf(path string) (string, bool) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	objs, err := filepath.EvalSymlinks(filepath.Join(s.root, "objects"))
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(objs, p)
	if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, "/") != 1 {
		return "", false
	}
	return rel, true
}

func sweep(repo *composefs.Repository, additionalRoots []string, dryRun bool, res *Result) error {
	s := &sweeper{repo: repo, root: repo.Path(), live: map[string]bool{}, stream: map[string]string{}, walked: map[string]bool{}, untagged: map[string]bool{}}
	if dryRun {
		for _, t := range res.Untagged {
			s.untagged[filepath.Join(s.root, "streams", "refs", "oci", composefs.EncodeTag(t))] = true
		}
	}

	// Image roots: images/refs/** and the additional roots (the live
	// deployments' verities) that exist as images/<name>. An image keeps
	// its own object and every object its files redirect to.
	var imageRoots []string
	if err := s.refs("images", func(p string) { imageRoots = append(imageRoots, p) }); err != nil {
		return err
	}
	for _, v := range additionalRoots {
		p := filepath.Join(s.root, "images", v)
		if _, err := os.Lstat(p); err == nil {
			imageRoots = append(imageRoots, p)
		}
	}
	for _, p := range imageRoots {
		if err := s.markImage(p); err != nil {
			return err
		}
	}

	// Stream roots: streams/refs/** (the OCI tags among them). Named refs
	// are followed into the streams they name, by object id.
	entries, err := os.ReadDir(filepath.Join(s.root, "streams"))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		if e.Name() == "refs" {
			continue
		}
		if obj, ok := s.objectOf(filepath.Join(s.root, "streams", e.Name())); ok {
			s.stream[obj] = e.Name()
		}
	}
	var streamRoots []string
	if err := s.refs("streams", func(p string) { streamRoots = append(streamRoots, p) }); err != nil {
		return err
	}
	for _, p := range streamRoots {
		if obj, ok := s.objectOf(p); ok {
			if err := s.walkStream(obj); err != nil {
				return err
			}
		}
	}

	if err := s.sweepObjects(dryRun, res); err != nil {
		return err
	}
	n, err := s.prune("images", dryRun)
	if err != nil {
		return err
	}
	res.ImagesPruned = n
	if n, err = s.prune("streams", dryRun); err != nil {
		return err
	}
	res.StreamsPruned = n
	if !dryRun {
		return repo.Sync()
	}
	return nil
}

// refs calls fn for every symlink below <category>/refs/, recursively.
func (s *sweeper) refs(category string, fn func(string)) error {
	dir := filepath.Join(s.root, category, "refs")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 && !s.untagged[p] {
			fn(p)
		}
		return nil
	})
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func (s *sweeper) markImage(path string) error {
	obj, ok := s.objectOf(path)
	if !ok {
		return nil // broken: pruned below
	}
	if s.walked["image:"+obj] {
		return nil
	}
	s.walked["image:"+obj] = true
	s.live[obj] = true
	data, err := os.ReadFile(filepath.Join(s.root, "objects", obj))
	if err != nil {
		return err
	}
	// Marking before the image is known whole is safe: a damaged image
	// fails the sweep, which then deletes nothing.
	err = erofs.ForEachExternal(data, func(obj string, _ int64) error {
		s.live[obj] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: image %s: %w", s.root, filepath.Base(path), err)
	}
	return nil
}

func (s *sweeper) walkStream(obj string) error {
	if s.walked[obj] {
		return nil
	}
	s.walked[obj] = true
	s.live[obj] = true
	data, err := os.ReadFile(filepath.Join(s.root, "objects", obj))
	if err != nil {
		return err
	}
	sr, err := splitstream.NewReader(data, uint8(s.repo.Algorithm()))
	if err != nil {
		return fmt.Errorf("%s: stream object %s: %w", s.root, obj, err)
	}
	defer sr.Close()
	for _, id := range sr.ObjectRefs {
		s.live[composefs.ObjectName(id)] = true
	}
	names := make([]string, 0, len(sr.NamedRefs))
	for n := range sr.NamedRefs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := composefs.ObjectName(sr.NamedRefs[n])
		s.live[o] = true
		if _, isStream := s.stream[o]; isStream {
			if err := s.walkStream(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepObjects unlinks every object of objects/XX/ that is not live. A
// name that is not an object name stops the collection, as in
// composefs-rs: something unknown is in the store (cfs-fsck objects names
// it).
func (s *sweeper) sweepObjects(dryRun bool, res *Result) error {
	objs := filepath.Join(s.root, "objects")
	dirs, err := os.ReadDir(objs)
	if err != nil {
		return err
	}
	restLen := 2*s.repo.Algorithm().Size() - 2
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 2 || !isHex(d.Name()) {
			continue // not an object directory (a temporary file of a writer)
		}
		entries, err := os.ReadDir(filepath.Join(objs, d.Name()))
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := d.Name() + "/" + e.Name()
			if len(e.Name()) != restLen || !isHex(e.Name()) {
				return fmt.Errorf("%s: %q is not an object name; refusing to collect (cfs-fsck objects reports it)", filepath.Join(objs, name), e.Name())
			}
			if s.live[name] {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			if !dryRun {
				if err := os.Remove(filepath.Join(objs, name)); err != nil {
					return err
				}
			}
			res.ObjectsRemoved++
			res.ObjectsBytes += fi.Size()
		}
	}
	return nil
}

// prune removes the symlinks of <category>/ (first level) and
// <category>/refs/** that are broken once the sweep is done, and counts
// them; in a dry run, those the sweep would break.
func (s *sweeper) prune(category string, dryRun bool) (int, error) {
	dir := filepath.Join(s.root, category)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	check := func(p string) error {
		// After the sweep every object left is live; a dry run removed
		// nothing, so there a non-live target counts as broken too.
		if obj, ok := s.objectOf(p); ok && (s.live[obj] || !dryRun) {
			return nil
		}
		n++
		if dryRun {
			return nil
		}
		return os.Remove(p)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Name() == "refs" && e.IsDir():
		case e.Type()&fs.ModeSymlink == 0:
			return n, fmt.Errorf("%s: not a symlink; composefs-rs's GC refuses a category directory holding one", p)
		default:
			if err := check(p); err != nil {
				return n, err
			}
		}
	}
	err = filepath.WalkDir(filepath.Join(dir, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case s.untagged[p]:
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return check(p)
		}
		return fmt.Errorf("%s: unexpected file type in refs", p)
	})
	if os.IsNotExist(err) {
		err = nil
	}
	return n, err
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}
