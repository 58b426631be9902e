package composefs

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// bootcMeta is the meta.json bootc writes for a new SHA-512 repository
// (serde_json::to_vec_pretty plus a newline).
const bootcMeta = `{
  "version": 1,
  "algorithm": "fsverity-sha512-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [
      "v1_erofs"
    ],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 1
  }
}
`

func newRepo(t *testing.T) *Repository {
	t.Helper()
	r, err := Create(filepath.Join(t.TempDir(), "composefs"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestCreateWritesBootcMeta(t *testing.T) {
	r := newRepo(t)
	got, err := os.ReadFile(filepath.Join(r.Path(), "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != bootcMeta {
		t.Errorf("meta.json:\n%s\nwant:\n%s", got, bootcMeta)
	}
	st, _ := os.Stat(r.Path())
	if st.Mode().Perm() != 0o700 {
		t.Errorf("repository mode %v, want 0700", st.Mode().Perm())
	}
	again, err := Create(r.Path(), fsverity.SHA512)
	if err != nil {
		t.Fatalf("re-creating with the same config: %v", err)
	}
	again.Close()
	if _, err := Create(r.Path(), fsverity.SHA256); err == nil {
		t.Error("re-creating with another algorithm succeeded")
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "no meta.json") {
		t.Errorf("empty dir: %v", err)
	}
	for name, text := range map[string]string{
		"newer version": `{"version":2,"algorithm":"fsverity-sha512-12"}`,
		"incompatible":  `{"version":1,"algorithm":"fsverity-sha512-12","features":{"incompatible":["future"]}}`,
		"bad algorithm": `{"version":1,"algorithm":"fsverity-md5-12"}`,
		"block size":    `{"version":1,"algorithm":"fsverity-sha512-16"}`,
		"not json":      `{`,
	} {
		os.WriteFile(filepath.Join(dir, "meta.json"), []byte(text), 0o644)
		if _, err := Open(dir); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// composefs-rs tests write this lenient form; it must open.
	os.WriteFile(filepath.Join(dir, "meta.json"), []byte(`{"version":1,"algorithm":"fsverity-sha256-12","features":{"read-only-compatible":["v1_erofs"]}}`), 0o644)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Algorithm() != fsverity.SHA256 {
		t.Errorf("algorithm %v", r.Algorithm())
	}
}

func TestObjects(t *testing.T) {
	r := newRepo(t)
	data := bytes.Repeat([]byte("composefs"), 1000)
	want, _ := fsverity.Digest(bytes.NewReader(data), fsverity.SHA512)
	id, size, created, err := r.WriteObject(bytes.NewReader(data))
	if err != nil || !created || size != int64(len(data)) || !bytes.Equal(id, want) {
		t.Fatalf("WriteObject: %x %d %v %v", id, size, created, err)
	}
	if _, _, created, err := r.WriteObject(bytes.NewReader(data)); err != nil || created {
		t.Fatalf("second WriteObject: created=%v %v", created, err)
	}
	// Pending: readable, but not named until a Flush made it durable.
	if _, err := os.Lstat(r.ObjectPath(id)); !os.IsNotExist(err) {
		t.Errorf("object named before Flush: %v", err)
	}
	if f, err := r.OpenObject(id); err != nil {
		t.Errorf("OpenObject of a pending object: %v", err)
	} else {
		f.Close()
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(r.ObjectPath(id))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object content: %v", err)
	}
	name := hex.EncodeToString(id)
	if r.ObjectPath(id) != filepath.Join(r.Path(), "objects", name[:2], name[2:]) {
		t.Errorf("object path %s", r.ObjectPath(id))
	}
	st, _ := os.Stat(r.ObjectPath(id))
	if st.Mode().Perm() != 0o644 {
		t.Errorf("object mode %v, want 0644", st.Mode().Perm())
	}
	leftovers, _ := filepath.Glob(filepath.Join(r.Path(), "objects", ".tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestStreamsImagesTags(t *testing.T) {
	r := newRepo(t)
	layer, _ := splitstream.NewWriter(2, splitstream.ContentOCILayer)
	layer.Write([]byte("tar bytes"))
	diffID := "sha256:" + strings.Repeat("1", 64)
	layerID, err := r.WriteStream(LayerContentID(diffID), layer)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.Readlink(filepath.Join(r.Path(), "streams", LayerContentID(diffID)))
	if text != "../objects/"+ObjectName(layerID) {
		t.Errorf("stream link %q", text)
	}
	imageID, err := r.WriteImage([]byte("not really erofs"))
	if err != nil {
		t.Fatal(err)
	}
	text, _ = os.Readlink(filepath.Join(r.Path(), "images", hex.EncodeToString(imageID)))
	if text != "../objects/"+ObjectName(imageID) || !r.HasImage(imageID) {
		t.Errorf("image link %q", text)
	}

	manifestDigest := "sha256:" + strings.Repeat("2", 64)
	manifest, _ := splitstream.NewWriter(2, splitstream.ContentOCIManifest)
	manifest.AddNamedRef(diffID, layerID)
	if err := r.SetTag("localhost/early", manifestDigest); err == nil {
		t.Error("tagged a manifest stream that does not exist")
	}
	if _, err := r.WriteStream(ManifestContentID(manifestDigest), manifest); err != nil {
		t.Fatal(err)
	}
	tag := "localhost/bootc-" + manifestDigest
	if err := r.SetTag(tag, manifestDigest); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(r.Path(), "streams/refs/oci/localhost%2Fbootc-"+manifestDigest)
	if text, _ := os.Readlink(link); text != "../../oci-manifest-"+manifestDigest {
		t.Errorf("tag link %q", text)
	}
	if got, err := r.ResolveTag(tag); err != nil || got != manifestDigest {
		t.Errorf("ResolveTag: %q %v", got, err)
	}
	if tags, _ := r.Tags(); len(tags) != 1 || tags[0] != tag {
		t.Errorf("Tags: %q", tags)
	}
	sr, _, err := r.OpenStream(ManifestContentID(manifestDigest), splitstream.ContentOCIManifest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sr.NamedRefs[diffID], layerID) {
		t.Errorf("named ref lost")
	}
	if _, _, err := r.OpenStream(ManifestContentID(manifestDigest), splitstream.ContentOCIConfig); err == nil {
		t.Error("content type not checked")
	}
	if EncodeTag("a/b%c") != "a%2Fb%25c" || DecodeTag("a%2Fb%25c") != "a/b%c" {
		t.Error("tag escaping")
	}
}

// TestSharedLock checks that an open repository keeps composefs-rs's GC,
// which takes the lock exclusively, waiting.
func TestSharedLock(t *testing.T) {
	r := newRepo(t)
	d, err := os.Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		t.Fatal("an exclusive lock was granted while the repository is open")
	}
	r.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("exclusive lock after Close: %v", err)
	}
}

func TestImportFileReflinks(t *testing.T) {
	fs := testfs.XFS(t, 0)
	r, err := Create(fs.Path("composefs"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := fs.Path("source")
	data := bytes.Repeat([]byte("0123456789abcdef"), 256*1024) // 4 MiB
	os.WriteFile(src, data, 0o600)
	id, size, how, created, err := r.ImportFile(src, reflink.Always)
	if err != nil || how != reflink.Cloned || !created || size != int64(len(data)) {
		t.Fatalf("ImportFile: %v %v %v %v", how, created, size, err)
	}
	want, _ := fsverity.DigestFile(src, fsverity.SHA512)
	if !bytes.Equal(id, want) {
		t.Fatalf("id %x, want %x", id, want)
	}
	obj, _ := r.OpenObject(id)
	defer obj.Close()
	shared, _, err := reflink.SharedBytes(obj)
	if err != nil || shared != int64(len(data)) {
		t.Errorf("object shares %d of %d bytes with its source (%v)", shared, len(data), err)
	}
}

// TestFlushInBackground: with background flushing on, objects get their
// names while the writer goes on, without a Flush; after done returns
// nothing changes any more, and Flush names the rest.
func TestFlushInBackground(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(filepath.Join(dir, "repo"), fsverity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := r.FlushInBackground()
	var ids [][]byte
	for i := 0; i < r.pending.Limit()-1; i++ {
		id, _, _, err := r.WriteObject(strings.NewReader(fmt.Sprintf("object %d with more than a few bytes in it", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	done()
	named := 0
	for _, id := range ids {
		if _, err := os.Lstat(r.ObjectPath(id)); err == nil {
			named++
		}
	}
	if named == 0 || named == len(ids) {
		t.Fatalf("%d of %d objects named before any Flush; want some, not all", named, len(ids))
	}
	// Off again: the writer that fills the batch flushes it, as before.
	if r.flushing.Load() || r.async.Load() != 0 {
		t.Fatal("a background flush is still on after done")
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := os.Lstat(r.ObjectPath(id)); err != nil {
			t.Fatalf("object %x not named after Flush: %v", id, err)
		}
	}
}

// TestNoLookupInMadeDirs: before storing an object, a handle looks for an
// existing one under its name, except in an objects/XX it made itself,
// where only what it named can be (a new repository: no lookup for any
// object after its directory's first). An object it named there is still
// found, and so is one in a directory that was there before.
func TestNoLookupInMadeDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "composefs")
	r, err := Create(dir, fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	// Bodies whose objects share their directory: the first byte of the
	// id decides it.
	var bodies [][]byte
	var first byte
	for i := 0; len(bodies) < 3; i++ {
		b := []byte(fmt.Sprintf("body %d of an object in one directory", i))
		id, err := fsverity.Digest(bytes.NewReader(b), fsverity.SHA512)
		if err != nil {
			t.Fatal(err)
		}
		if len(bodies) == 0 {
			first = id[0]
		}
		if id[0] == first {
			bodies = append(bodies, b)
		}
	}
	write := func(r *Repository, body []byte, wantCreated bool, wantChecks int64) {
		t.Helper()
		before := storedChecks.Load()
		_, _, created, err := r.WriteObject(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		if created != wantCreated {
			t.Errorf("%q: created %v, want %v", body, created, wantCreated)
		}
		if n := storedChecks.Load() - before; n != wantChecks {
			t.Errorf("%q: %d lookups of an existing object, want %d", body, n, wantChecks)
		}
	}
	write(r, bodies[0], true, 1)  // the directory is not there yet
	write(r, bodies[1], true, 0)  // made by this handle: nothing to find
	write(r, bodies[0], false, 1) // named by this handle: found
	r.Close()

	r, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	write(r, bodies[2], true, 1)  // a directory that was there
	write(r, bodies[1], false, 1) // and what is in it
}
