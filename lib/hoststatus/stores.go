package hoststatus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/reflink"
)

// Stores is the --verbose report: where each store is, whether the
// filesystem reflinks, and how much of each object store's data lies in
// extents shared with other files (FIEMAP's SHARED flag) versus alone.
type Stores struct {
	ContainersStorage Store  `json:"containersStorage"`
	Composefs         Store  `json:"composefs"`
	Ostree            Store  `json:"ostree"`
	ReflinksSupported *bool  `json:"reflinksSupported"` // null: could not probe (e.g. read-only mount)
	ReflinkError      string `json:"reflinkError,omitempty"`
}

// Store is one store: where, whether it exists, its objects' sharing.
type Store struct {
	Path    string `json:"path"`
	Present bool   `json:"present"`
	// Objects: statistics of the files holding image bytes: objects/ of
	// composefs and ostree, the layers' diff directories of
	// containers-storage (overlay/*/diff).
	Objects *Objects `json:"objects,omitempty"`
}

// Objects counts a store's objects and how their bytes are shared.
type Objects struct {
	Files       int64 `json:"files"`
	Bytes       int64 `json:"bytes"`       // sum of file sizes
	SharedBytes int64 `json:"sharedBytes"` // in extents marked shared
	AloneBytes  int64 `json:"aloneBytes"`  // mapped, not shared
	// SharingUnknown: the filesystem has no FIEMAP (tmpfs and the like).
	SharingUnknown bool `json:"sharingUnknown,omitempty"`
	// Partial: the scan hit its time limit; the numbers cover what it saw.
	Partial bool   `json:"partial,omitempty"`
	Error   string `json:"error,omitempty"`
}

// ScanStores walks the composefs and ostree object directories of the
// physical root once each, one file open at a time, so memory stays flat
// however big the stores are; ctx's deadline bounds the time (the counts
// are then marked Partial).
func ScanStores(ctx context.Context, root string) *Stores {
	s := &Stores{
		ContainersStorage: Store{Path: filepath.Join(root, "ostree", "bootc", "storage")},
		Composefs:         Store{Path: filepath.Join(root, "composefs")},
		Ostree:            Store{Path: filepath.Join(root, "ostree", "repo")},
	}
	s.ContainersStorage.Present = isDir(s.ContainersStorage.Path)
	// Only the layers' files: the rest of a graph root is c/storage's
	// bookkeeping (layers.json, tar-split, link files).
	diffs, _ := filepath.Glob(filepath.Join(s.ContainersStorage.Path, "overlay", "*", "diff"))
	if s.ContainersStorage.Present {
		scanObjects(ctx, &s.ContainersStorage, diffs...)
	}
	scanObjects(ctx, &s.Composefs, filepath.Join(s.Composefs.Path, "objects"))
	scanObjects(ctx, &s.Ostree, filepath.Join(s.Ostree.Path, "objects"))

	ok, err := reflink.Supported(root)
	switch {
	case err == nil:
		s.ReflinksSupported = &ok
	case s.Composefs.Shares() || s.Ostree.Shares() || s.ContainersStorage.Shares():
		// Cannot probe (a read-only /sysroot), but shared extents prove it.
		yes := true
		s.ReflinksSupported = &yes
	default:
		s.ReflinkError = err.Error()
	}
	return s
}

// Shares tells whether any of the store's objects lies in shared extents.
func (st Store) Shares() bool { return st.Objects != nil && st.Objects.SharedBytes > 0 }

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// scanObjects counts the regular files below the dirs that exist; a store
// with none of them keeps Objects nil.
func scanObjects(ctx context.Context, store *Store, dirs ...string) {
	var present []string
	for _, d := range dirs {
		if isDir(d) {
			present = append(present, d)
		}
	}
	if len(present) == 0 {
		return
	}
	store.Present = true
	st := &Objects{}
	store.Objects = st
	fiemap := true
	walk := func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			st.Partial = true
			return filepath.SkipAll
		}
		if !e.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		st.Files++
		st.Bytes += fi.Size()
		if !fiemap {
			return nil
		}
		shared, total, err := reflink.SharedBytes(f)
		if errors.Is(err, reflink.ErrFiemapUnsupported) {
			fiemap, st.SharingUnknown = false, true
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		st.SharedBytes += shared
		st.AloneBytes += total - shared
		return nil
	}
	for _, d := range present {
		if err := filepath.WalkDir(d, walk); err != nil {
			st.Error = err.Error()
			return
		}
		if st.Partial {
			return
		}
	}
}
