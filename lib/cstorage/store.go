// Package cstorage reads and writes images in a containers-storage store
// (the overlay driver podman and bootc use) through go.podman.io/storage.
//
// Reading (Store.FindImage, Store.OpenLayer) never copies a layer: a
// layer's tar is rebuilt from its tar-split (headers and padding recorded
// when the layer was applied) and the files in the layer's diff directory,
// so a caller can share those files' extents (FICLONE) instead of reading
// a tar. Writing (Store.WriteImage) goes the other way: each layer is
// applied through a Differ that lays out the files itself (cloning bodies
// from files the caller names) and records the tar-split, so that
// Store.Diff gives back the layer tar byte for byte.
//
// The graph root must be writable even to read: c/storage takes its lock
// files there. Programs using this package must call reexec.Init() first
// in main (c/storage re-executes itself for some operations).
package cstorage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	storagetypes "go.podman.io/storage/types"
)

// DefaultGraphRoot is bootc's store below a physical root.
func DefaultGraphRoot(sysroot string) string {
	return filepath.Join(sysroot, "ostree", "bootc", "storage")
}

// DefaultRunRoot is the run root cfs uses when none is given: a private
// directory, so that nothing podman or bootc keep in theirs is touched.
const DefaultRunRoot = "/run/cfs/storage"

// Store is an open containers-storage store.
type Store struct {
	s                  storage.Store
	graphRoot, runRoot string
}

// Open opens (creating it if needed) the overlay store at graphRoot with
// runRoot as its run root. overlay.skip_mount_home keeps the driver from
// bind-mounting its home on itself, which would outlive a crash of ours.
// Nothing is read from storage.conf: every field is given.
func Open(graphRoot, runRoot string) (*Store, error) {
	if graphRoot == "" {
		return nil, errors.New("containers-storage: no graph root")
	}
	if runRoot == "" {
		runRoot = DefaultRunRoot
	}
	graphRoot, err := filepath.Abs(graphRoot)
	if err != nil {
		return nil, err
	}
	if runRoot, err = filepath.Abs(runRoot); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runRoot, 0o700); err != nil {
		return nil, fmt.Errorf("containers-storage run root: %w", err)
	}
	s, err := storage.GetStore(storagetypes.StoreOptions{
		GraphRoot:          graphRoot,
		RunRoot:            runRoot,
		GraphDriverName:    "overlay",
		GraphDriverOptions: []string{"overlay.skip_mount_home=true"},
	})
	if err != nil {
		return nil, fmt.Errorf("containers-storage %s: %w", graphRoot, err)
	}
	return &Store{s: s, graphRoot: graphRoot, runRoot: runRoot}, nil
}

// Close releases the store. It must be called before the store's
// directories are removed.
func (s *Store) Close() error {
	_, err := s.s.Shutdown(false)
	return err
}

// GraphRoot and RunRoot are the absolute paths the store was opened with.
func (s *Store) GraphRoot() string { return s.graphRoot }
func (s *Store) RunRoot() string   { return s.runRoot }

// Storage is the underlying c/storage store.
func (s *Store) Storage() storage.Store { return s.s }

// Reference is a parsed containers-storage: image reference.
type Reference struct {
	GraphRoot, RunRoot string // "" when the reference names no store
	Image              string // name or ID
}

// ParseReference parses what follows "containers-storage:" the way
// c/image does: an optional "[driver@graphroot+runroot]" (only the overlay
// driver is accepted: it is the one whose files can be shared), then a
// name or an ID.
func ParseReference(ref string) (Reference, error) {
	var r Reference
	rest := ref
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return r, fmt.Errorf("containers-storage reference %q: no closing ]", ref)
		}
		spec := rest[1:end]
		rest = rest[end+1:]
		if i := strings.IndexByte(spec, ':'); i >= 0 {
			return r, fmt.Errorf("containers-storage reference %q: driver options are not supported", ref)
		}
		driver, roots, ok := strings.Cut(spec, "@")
		if !ok {
			roots, driver = spec, "overlay"
		}
		if driver != "overlay" {
			return r, fmt.Errorf("containers-storage reference %q: driver %q: only overlay stores can be read", ref, driver)
		}
		r.GraphRoot, r.RunRoot, _ = strings.Cut(roots, "+")
		if r.GraphRoot == "" {
			return r, fmt.Errorf("containers-storage reference %q: no graph root", ref)
		}
	}
	if rest == "" {
		return r, fmt.Errorf("containers-storage reference %q: no image name or ID", ref)
	}
	r.Image = rest
	return r, nil
}

// Diff is the layer's tar as c/storage rebuilds it, uncompressed: from
// the tar-split and the diff files (checking each body's CRC64), or, for
// a layer without tar-split, from the driver's own diff of the directory.
func (s *Store) Diff(layerID string) (io.ReadCloser, error) {
	return s.s.Diff("", layerID, &storage.DiffOptions{Compression: &uncompressed})
}

var uncompressed = archive.Uncompressed
