package fsck

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// repair fixes what another store can fix, under the exclusive lock:
// stray files go; a corrupt or missing object that the ostree repository
// or containers-storage still holds with the right digest (a reflinked
// copy, as the pipeline made it) is restored from there. What remains
// needs a re-pull, which finish says.
func (c *objChecker) repair() {
	if c.repo == nil {
		return
	}
	wanted := map[string]int64{} // object name → size, for objects to restore
	for i := range c.rep.Problems {
		p := &c.rep.Problems[i]
		if p.Store != "composefs" {
			continue
		}
		switch p.Code {
		case CodeStrayFile:
			if err := os.RemoveAll(p.Path); err == nil {
				p.Repaired = true
				c.rep.Repaired++
			}
		case CodeObjectRecordMismatch:
			// A record only spares a clone a read: without it the
			// object's bytes are read and hashed again.
			if err := unix.Removexattr(p.Path, composefs.RecordXattr); err == nil || errors.Is(err, unix.ENODATA) {
				p.Repaired = true
				p.Detail += "; record removed"
				c.rep.Repaired++
			}
		case CodeObjectDigestMismatch, CodeDanglingStreamRef, CodeImageMissingObject, CodeBrokenSymlink, CodeObjectUnreadable:
			if p.object != "" && p.size > 0 {
				wanted[p.object] = p.size
			}
		}
	}
	if len(wanted) == 0 {
		c.dropCorrupt()
		return
	}
	sizes := map[int64]bool{}
	for _, s := range wanted {
		sizes[s] = true
	}
	restored := map[string]bool{}
	try := func(path string, size int64) {
		if !sizes[size] {
			return
		}
		d, err := fsverity.DigestFile(path, c.repo.Algorithm())
		if err != nil {
			return
		}
		h := hex.EncodeToString(d)
		name := h[:2] + "/" + h[2:]
		if _, ok := wanted[name]; !ok || restored[name] {
			return
		}
		if c.restore(name, d, path) {
			restored[name] = true
		}
	}
	// ostree file objects (bare: the content itself), then the diff
	// files of containers-storage layers.
	if c.h.Kind == sysroot.KindOstree {
		walkRegular(filepath.Join(c.h.Root, sysroot.OstreeRepoPath, "objects"), func(p string, size int64) {
			if strings.HasSuffix(p, ".file") {
				try(p, size)
			}
		})
	}
	walkRegular(filepath.Join(c.opts.GraphRoot, "overlay"), func(p string, size int64) {
		if strings.Contains(p, "/diff/") {
			try(p, size)
		}
	})
	// A restored object has its name only once its bytes are durable:
	// report it repaired only after that.
	if err := c.repo.Flush(); err != nil {
		restored = nil
	}
	for i := range c.rep.Problems {
		p := &c.rep.Problems[i]
		if !p.Repaired && p.object != "" && restored[p.object] {
			p.Repaired = true
			c.rep.Repaired++
		}
	}
	c.dropCorrupt()
}

// dropCorrupt removes the corrupt objects no store could restore: readers
// trust names, so such an object can only mislead them; once it is gone, a
// re-pull fetches the layer that needs it.
func (c *objChecker) dropCorrupt() {
	for i := range c.rep.Problems {
		p := &c.rep.Problems[i]
		if p.Code == CodeObjectDigestMismatch && !p.Repaired && os.Remove(p.Path) == nil {
			p.Detail += "; removed, so that a re-pull fetches it again"
		}
	}
}

// restore replaces the object name by a clone of src, whose digest is id.
func (c *objChecker) restore(name string, id []byte, src string) bool {
	dst := filepath.Join(c.repo.Path(), "objects", name)
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		return false
	}
	got, _, _, _, err := c.repo.ImportFile(src, reflink.Auto)
	return err == nil && bytes.Equal(got, id)
}

func walkRegular(root string, fn func(path string, size int64)) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				fn(p, fi.Size())
			}
		}
		return nil
	})
}
