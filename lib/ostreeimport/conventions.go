package ostreeimport

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// ExcludedTopLevel are the root directories bootc keeps as empty
// directories (with their own dirmeta) and whose content it never commits:
// they are API filesystems or scratch space on a booted host.
// (ostree-ext composefs_import.rs EXCLUDED_TOPLEVEL_PATHS.)
var ExcludedTopLevel = []string{"run", "tmp", "proc", "sys", "dev"}

func isExcludedName(name string) bool {
	for _, x := range ExcludedTopLevel {
		if name == x {
			return true
		}
	}
	return false
}

// Placement says what the ostree commit does with one stream entry.
type Placement int

const (
	// Keep: the entry is committed at its own path (or, under /etc, at
	// /usr/etc).
	Keep Placement = iota
	// Skip: the entry is left out because it lies below an excluded
	// top-level directory, or is a non-directory at an excluded name.
	Skip
)

// Place applies the excluded-top-level rule to e.
func Place(e *stream.Entry) Placement {
	if e.Path == "/" {
		return Keep
	}
	top, rest, below := strings.Cut(e.Path[1:], "/")
	if !isExcludedName(top) {
		return Keep
	}
	if below && rest != "" {
		return Skip
	}
	if e.Type != stream.TypeDir {
		return Skip
	}
	return Keep
}

// Check refuses entries an ostree commit cannot hold. Both cfs-clone and
// the importer call it, so a bad tree fails before any object is written.
// Devices, FIFOs and sockets are an error, as in bootc: an OS image has no
// business shipping them outside /dev (which is skipped), and ostree has no
// object type for them. Names and targets must be UTF-8, because ostree
// stores them as GVariant strings (`ostree commit` refuses them too).
func Check(e *stream.Entry) error {
	if Place(e) == Skip {
		return nil
	}
	switch e.Type {
	case stream.TypeCharDev, stream.TypeBlockDev, stream.TypeFifo, stream.TypeSocket:
		return fmt.Errorf("%s: a %s cannot be stored in an ostree commit (only below /dev, which is not committed)", e.Path, e.Type)
	}
	if !utf8.ValidString(e.Path) {
		return fmt.Errorf("%q: the path is not UTF-8, which ostree cannot store", e.Path)
	}
	if e.Type == stream.TypeSymlink && !utf8.ValidString(e.Target) {
		return fmt.Errorf("%s: symlink target %q is not UTF-8, which ostree cannot store", e.Path, e.Target)
	}
	if e.Type == stream.TypeHardlink && Place(&stream.Entry{Path: e.LinkTo, Type: stream.TypeFile}) == Skip {
		return fmt.Errorf("%s: hardlink to %s, which is below an excluded directory and not committed", e.Path, e.LinkTo)
	}
	return nil
}

// Xattrs returns the xattrs as ostree must record them. security.selinux
// gets a trailing NUL when it lacks one: the kernel stores the label with
// it, and `ostree fsck` re-reads bare objects from disk, so an object named
// without the NUL would fail fsck. (ostree-ext does the same.)
func Xattrs(in map[string][]byte) map[string][]byte {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string][]byte, len(in))
	for k, v := range in {
		if k == "security.selinux" && len(v) > 0 && v[len(v)-1] != 0 {
			v = append(append(make([]byte, 0, len(v)+1), v...), 0)
		}
		out[k] = v
	}
	return out
}

// FileMeta is the metadata of the file or symlink object for e.
func FileMeta(e *stream.Entry) ostree.FileMeta {
	return ostree.FileMeta{UID: e.UID, GID: e.GID, Mode: e.Mode, Xattrs: Xattrs(e.Xattrs)}
}

// DirMeta is the dirmeta object for directory e.
func DirMeta(e *stream.Entry) ostree.DirMeta {
	return ostree.DirMeta{UID: e.UID, GID: e.GID, Mode: e.Mode, Xattrs: Xattrs(e.Xattrs)}
}
