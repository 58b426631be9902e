package main

import (
	"compress/gzip"
	"crypto/sha256"
	be "encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
)

// TestExportTakesRecordedCRC: from a trusted repository (the pull's, root's
// own), the export writes into tar-split the CRC64 recorded with each
// object instead of reading the body: a record made wrong on purpose ends
// up in the store's tar-split (where Store.Diff then trips over it),
// which only an export that did not read the bytes can do. With --verify,
// or from a repository others may write, every body is read: the tar-split
// holds the bytes' CRC64 and Store.Diff gives back every diff ID. An
// honest trusted export round-trips through Store.Diff as well.
func TestExportTakesRecordedCRC(t *testing.T) {
	testfs.RequirePrivileged(t)
	xfs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 23})
	if err != nil {
		t.Fatal(err)
	}
	layout := xfs.Path("layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	repo := xfs.Path("composefs")
	list := runOK(t, nil, pullBinary, "--repo", repo, "--quiet", "--insecure-policy", "oci:"+layout+":latest")

	// The largest object with a CRC record gets a wrong one.
	var victim string
	var victimSize int64
	var honest composefs.ObjectRecords
	err = filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		o, err := composefs.ReadObjectRecords(f)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if o.HasCRC64 && fi.Size() > victimSize {
			victim, victimSize, honest = p, fi.Size(), o
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if victim == "" {
		t.Fatal("the pull recorded no CRC64 with its objects")
	}
	wrong := honest
	wrong.CRC64 ^= 0x5a5a_0000_0000_a5a5
	setRecord := func(o composefs.ObjectRecords) {
		t.Helper()
		if err := unix.Setxattr(victim, composefs.RecordXattr, composefs.EncodeObjectRecords(o), 0); err != nil {
			t.Fatal(err)
		}
	}
	setRecord(wrong)

	diffIDs := map[string]bool{}
	for _, d := range img.DiffIDs {
		diffIDs[d.String()] = true
	}
	// export writes the image into a fresh store and reports how many
	// tar-split entries carry the wrong CRC64 and which layers Store.Diff
	// gives back with their diff ID.
	export := func(name string, args ...string) (wrongEntries int, diffOK int, stderr string) {
		t.Helper()
		s := newStore(xfs.Path(name))
		_, errb, err := runErr(list, binary, append([]string{"--to", "containers-storage", "--root", s.graph, "--runroot", s.run}, args...)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, errb)
		}
		st, err := cstorage.Open(s.graph, s.run)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		im, err := st.FindImage(img.ConfigDigest.Encoded())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range im.Layers {
			wrongEntries += tarSplitCRCs(t, filepath.Join(s.graph, "overlay-layers", l.ID+".tar-split.gz"), wrong.CRC64)
			rc, err := st.Diff(l.ID)
			if err != nil {
				continue
			}
			h := sha256.New()
			_, err = io.Copy(h, rc)
			rc.Close()
			if err == nil && diffIDs["sha256:"+hex.EncodeToString(h.Sum(nil))] {
				diffOK++
			}
		}
		return wrongEntries, diffOK, errb
	}

	n, ok, errb := export("trusted")
	if n == 0 {
		t.Errorf("trusted export: the wrong CRC64 record is in no tar-split: the body was read (%s)", errb)
	}
	if ok != len(diffIDs)-1 {
		t.Errorf("trusted export: Store.Diff gives back %d diff IDs, want all but the layer with the wrong record (%d)", ok, len(diffIDs)-1)
	}
	if !strings.Contains(errb, "diff IDs trusted") {
		t.Errorf("trusted export summary: %s", errb)
	}

	for _, c := range []struct {
		name string
		args []string
		mode os.FileMode
	}{
		{"verify", []string{"--verify"}, 0o755},
		{"untrusted", nil, 0o775},
	} {
		if err := os.Chmod(repo, c.mode); err != nil {
			t.Fatal(err)
		}
		n, ok, errb := export(c.name, c.args...)
		if n != 0 {
			t.Errorf("%s export: %d tar-split entries carry the wrong record instead of the bytes' CRC64", c.name, n)
		}
		if ok != len(diffIDs) {
			t.Errorf("%s export: Store.Diff gives back %d of %d diff IDs", c.name, ok, len(diffIDs))
		}
		if !strings.Contains(errb, "layers hashed, bodies read") {
			t.Errorf("%s export summary: %s", c.name, errb)
		}
	}
	if err := os.Chmod(repo, 0o755); err != nil {
		t.Fatal(err)
	}

	setRecord(honest)
	if n, ok, errb := export("honest"); n != 0 || ok != len(diffIDs) || !strings.Contains(errb, "diff IDs trusted") {
		t.Errorf("honest trusted export: %d wrong entries, %d of %d diff IDs given back; %s", n, ok, len(diffIDs), errb)
	}
}

// tarSplitCRCs counts the file entries of a stored tar-split whose CRC64
// is crc.
func tarSplitCRCs(t *testing.T, path string, crc uint64) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	up := tsstorage.NewJSONUnpacker(gz)
	n := 0
	for {
		e, err := up.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if e.Type == tsstorage.FileType && len(e.Payload) == 8 && be.BigEndian.Uint64(e.Payload) == crc {
			n++
		}
	}
}
