package cstorage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	drivers "go.podman.io/storage/drivers"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/crc64iso"
)

// verifyLayer checks that the store gives back, for the layer d just
// laid out and the store recorded as id, the tar whose sha256 ApplyDiff
// found equal to the diff ID, without reading the cloned bodies again.
//
// Store.Diff (what podman push and save use) rebuilds a layer from the
// tar-split the store kept and, for each body, the file the driver finds
// under the member's name. ApplyDiff hashed the tar from those same
// parts: the segments it recorded in the tar-split and each cloned body
// read from the file laid out for it. So Store.Diff gives that tar back
// exactly when the stored tar-split is the one ApplyDiff recorded and
// each body's name leads to the file its bytes were read from (a later
// member replacing it through a symlink, or a file found in a layer below
// would not). Both are checked here: the tar-split by its sha256, each
// name by the inode it resolves to in the layer's diff directory, where
// the driver's getter looks first. Nothing the extraction does after
// reading a body changes its bytes (an existing path is removed before a
// member is created there), and the rename of the staging directory keeps
// the inodes. A body ApplyDiff did not read from its file (written from
// the stream, or not stored by the extraction) is read back through the
// getter and checked against its CRC64, as Store.Diff would. Where the
// diff ID is trusted (NewImage.TrustDiffIDs) the tar was not hashed, and
// the same checks tie each body's name to the inode it was cloned into.
func (s *Store) verifyLayer(id string, d *cloneDiffer) error {
	where := fmt.Sprintf("containers-storage layer %s (%s)", id, d.diffID)
	f, err := os.Open(s.tarSplitPath(id))
	if err != nil {
		return fmt.Errorf("%s: reading back its tar-split: %w", where, err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: tar-split %s: %w", where, f.Name(), err)
	}
	defer gz.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, gz); err != nil {
		return fmt.Errorf("%s: its stored tar-split: %w", where, err)
	}
	if !bytes.Equal(sum.Sum(nil), d.tarSplitID[:]) {
		return fmt.Errorf("%s: the store kept another tar-split than the one written", where)
	}
	driver, err := s.s.GraphDriver()
	if err != nil {
		return err
	}
	dg, ok := driver.(drivers.DiffGetterDriver)
	if !ok {
		return fmt.Errorf("%s: the %s driver cannot hand out layer files", where, driver.String())
	}
	getter, err := dg.DiffGetter(id)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	defer getter.Close()
	diffDir := -1
	if fd, err := unix.Open(filepath.Join(s.graphRoot, "overlay", id, "diff"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		diffDir = fd
		defer unix.Close(fd)
	}
	// The checks are independent stats (a read for the few bodies not
	// read from their own file): several at once, the first failing
	// member in tar order reported.
	errs := make([]error, len(d.bodies))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(2*runtime.GOMAXPROCS(0), len(d.bodies)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(d.bodies) {
					return
				}
				errs[i] = checkBody(getter, diffDir, d.bodies[i])
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: member %q: %w", where, d.bodies[i].name, err)
		}
	}
	return nil
}

// checkBody checks the file the store gives back for a body against what
// ApplyDiff hashed for it. A body read from its own file is checked by
// inode, with a stat beneath the diff directory that resolves the name as
// the getter's open does.
func checkBody(getter drivers.FileGetCloser, diffDir int, rec bodyRecord) error {
	if rec.read && diffDir >= 0 {
		rel := strings.TrimPrefix(filepath.Clean("/"+rec.name), "/")
		var st unix.Stat_t
		if err := unix.Fstatat(diffDir, rel, &st, 0); err != nil {
			return fmt.Errorf("the store cannot give its file back: stat %s: %w", rel, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != rec.size {
			return fmt.Errorf("the store gives back %s of %d bytes, the tar says %d", rel, st.Size, rec.size)
		}
		if st.Dev != rec.dev || st.Ino != rec.ino {
			return fmt.Errorf("the store gives back %s, not the file the body was written to", rel)
		}
		return nil
	}
	rc, err := getter.Get(rec.name)
	if err != nil {
		return fmt.Errorf("the store cannot give its file back: %w", err)
	}
	defer rc.Close()
	f, ok := rc.(*os.File)
	if !ok {
		return errors.New("the storage driver does not hand out files")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	if st.Size != rec.size {
		return fmt.Errorf("the store gives back %s of %d bytes, the tar says %d", f.Name(), st.Size, rec.size)
	}
	if rec.read {
		if st.Dev != rec.dev || st.Ino != rec.ino {
			return fmt.Errorf("the store gives back %s, not the file the body was written to", f.Name())
		}
		return nil
	}
	crc := crc64iso.New()
	if _, err := io.Copy(crc, f); err != nil {
		return err
	}
	if crc.Sum64() != rec.crc {
		return fmt.Errorf("the store gives back %s, whose bytes are not the body's (CRC64)", f.Name())
	}
	return nil
}
