package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cfs-project/cfs/lib/reflink"
)

// storesJSON is the --verbose report: where each store is, whether the
// filesystem reflinks, and how much of each object store's data lies in
// extents shared with other files (FIEMAP's SHARED flag) versus alone.
type storesJSON struct {
	ContainersStorage storeJSON `json:"containersStorage"`
	Composefs         storeJSON `json:"composefs"`
	Ostree            storeJSON `json:"ostree"`
	ReflinksSupported *bool     `json:"reflinksSupported"` // null: could not probe (e.g. read-only mount)
	ReflinkError      string    `json:"reflinkError,omitempty"`
}

type storeJSON struct {
	Path    string `json:"path"`
	Present bool   `json:"present"`
	// Objects: statistics of objects/; absent for containers-storage.
	Objects *objectsJSON `json:"objects,omitempty"`
}

type objectsJSON struct {
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

// scanStores walks the composefs and ostree object directories once each,
// one file open at a time, so memory stays flat however big the stores
// are; the deadline bounds the time.
func scanStores(root string, limit time.Duration) *storesJSON {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	s := &storesJSON{
		ContainersStorage: storeJSON{Path: filepath.Join(root, "ostree", "bootc", "storage")},
		Composefs:         storeJSON{Path: filepath.Join(root, "composefs")},
		Ostree:            storeJSON{Path: filepath.Join(root, "ostree", "repo")},
	}
	s.ContainersStorage.Present = isDir(s.ContainersStorage.Path)
	scanObjects(ctx, &s.Composefs, filepath.Join(s.Composefs.Path, "objects"))
	scanObjects(ctx, &s.Ostree, filepath.Join(s.Ostree.Path, "objects"))

	ok, err := reflink.Supported(root)
	switch {
	case err == nil:
		s.ReflinksSupported = &ok
	case sharesAny(s.Composefs) || sharesAny(s.Ostree):
		// Cannot probe (a read-only /sysroot), but shared extents prove it.
		yes := true
		s.ReflinksSupported = &yes
	default:
		s.ReflinkError = err.Error()
	}
	return s
}

func sharesAny(st storeJSON) bool { return st.Objects != nil && st.Objects.SharedBytes > 0 }

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func scanObjects(ctx context.Context, store *storeJSON, objects string) {
	if !isDir(objects) {
		return
	}
	store.Present = true
	st := &objectsJSON{}
	store.Objects = st
	fiemap := true
	err := filepath.WalkDir(objects, func(path string, e fs.DirEntry, err error) error {
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
	})
	if err != nil {
		st.Error = err.Error()
	}
}

func writeStoresHuman(w io.Writer, s *storesJSON) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Stores:")
	fmt.Fprintf(w, "  containers-storage: %s%s\n", s.ContainersStorage.Path, presence(s.ContainersStorage))
	for _, e := range []struct {
		name string
		st   storeJSON
	}{{"composefs", s.Composefs}, {"ostree", s.Ostree}} {
		fmt.Fprintf(w, "  %-19s %s%s\n", e.name+":", e.st.Path, presence(e.st))
		o := e.st.Objects
		if o == nil {
			continue
		}
		fmt.Fprintf(w, "  %-19s %d objects, %s", "", o.Files, size(o.Bytes))
		if o.SharingUnknown {
			fmt.Fprint(w, "; sharing unknown (no FIEMAP)")
		} else {
			fmt.Fprintf(w, "; %s shared, %s alone", size(o.SharedBytes), size(o.AloneBytes))
		}
		if o.Partial {
			fmt.Fprint(w, " (partial: scan time limit reached)")
		}
		fmt.Fprintln(w)
		if o.Error != "" {
			fmt.Fprintf(w, "  %-19s error: %s\n", "", o.Error)
		}
	}
	switch {
	case s.ReflinksSupported == nil:
		fmt.Fprintf(w, "  %-19s unknown (%s)\n", "reflinks:", s.ReflinkError)
	case *s.ReflinksSupported:
		fmt.Fprintf(w, "  %-19s yes\n", "reflinks:")
	default:
		fmt.Fprintf(w, "  %-19s no (stores cannot share extents)\n", "reflinks:")
	}
}

func presence(st storeJSON) string {
	if st.Present {
		return ""
	}
	return " (absent)"
}

// size prints exact bytes, with a binary-unit hint when large.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}
