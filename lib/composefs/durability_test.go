package composefs

import (
	"bytes"
	"encoding/hex"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// checkObjects walks objects/ and fails for any file whose fs-verity
// digest is not its name; it returns the names it found.
func checkObjects(t *testing.T, repo string, alg fsverity.Algorithm) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	root := filepath.Join(repo, "objects")
	bad := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := filepath.Dir(rel) + filepath.Base(rel)
		got, err := fsverity.DigestFile(p, alg)
		if err != nil || hex.EncodeToString(got) != name {
			if bad++; bad <= 5 {
				st, _ := os.Lstat(p)
				t.Errorf("object %s: %d bytes, digest %x (%v)", rel, st.Size(), got, err)
			}
		}
		found[name] = true
		return nil
	})
	if bad > 5 {
		t.Errorf("... %d objects in all do not match their names", bad)
	}
	return found
}

// TestObjectsDurableBeforeNamed: objects written while another process
// fsyncs every 20 ms, then a power cut (XFS shutdown). Every name that
// survives must name its whole bytes, and every object flushed before the
// cut must have survived. Linking an object before its bytes are durable
// (what the repository did) leaves 0-byte files under digest names here.
func TestObjectsDurableBeforeNamed(t *testing.T) {
	testObjectsDurableBeforeNamed(t, false)
}

// TestObjectsDurableBeforeNamedInBackground: the same with objects named
// by background flushes (FlushInBackground), several of which run
// before, and one possibly during, the cut.
func TestObjectsDurableBeforeNamedInBackground(t *testing.T) {
	testObjectsDurableBeforeNamed(t, true)
}

func testObjectsDurableBeforeNamed(t *testing.T, background bool) {
	xfs := testfs.XFS(t, 0)
	path := xfs.Path("composefs")
	r, err := Create(path, fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	stop := xfs.FsyncNoise(t)
	rng := rand.New(rand.NewSource(1))
	write := func(n int) []string {
		var ids []string
		for i := 0; i < n; i++ {
			data := make([]byte, 100+rng.Intn(64<<10))
			rng.Read(data)
			id, _, _, err := r.WriteObject(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, hex.EncodeToString(id))
		}
		return ids
	}
	n := 300
	if background {
		defer r.FlushInBackground()()
		n = r.pending.Limit() + 100
	}
	flushed := write(n)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	write(n) // pending at the cut
	time.Sleep(200 * time.Millisecond)
	xfs.Shutdown(t)
	stop()
	r.Close() // fails: the filesystem is gone
	xfs.Remount(t)

	found := checkObjects(t, path, fsverity.SHA512)
	for _, id := range flushed {
		if !found[id] {
			t.Errorf("flushed object %s lost", id)
			break
		}
	}
	r, err = Open(path)
	if err != nil {
		t.Fatalf("the repository does not open after the crash: %v", err)
	}
	defer r.Close()
	if _, err := r.EnsureObject([]byte("after the crash")); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRepairsSubdirs: a crash during Create, as it was written
// before, left meta.json without objects/, streams/ and images/, and
// every later write failed. Open recreates them.
func TestOpenRepairsSubdirs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "composefs")
	os.Mkdir(path, 0o700)
	if err := os.WriteFile(filepath.Join(path, "meta.json"), []byte(bootcMeta), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	id, _, _, err := r.WriteObject(bytes.NewReader(bytes.Repeat([]byte("x"), 1000)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.ObjectPath(id)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"streams", "images"} {
		if st, err := os.Stat(filepath.Join(path, d)); err != nil || !st.IsDir() {
			t.Errorf("%s not recreated: %v", d, err)
		}
	}
}

// TestReplacesWrongObjects: an object a crash left short (here 0 bytes
// and one truncated) under its name is replaced by the next write of the
// same bytes, through each way of writing objects.
func TestReplacesWrongObjects(t *testing.T) {
	r := newRepo(t)
	data := bytes.Repeat([]byte("durable"), 3000)
	small := []byte("a stream or an image, compared whole")
	id, _ := fsverity.Digest(bytes.NewReader(data), fsverity.SHA512)
	sid, _ := fsverity.Digest(bytes.NewReader(small), fsverity.SHA512)
	plant := func(id []byte, content []byte) {
		p := r.ObjectPath(id)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Remove(p)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, id, want []byte) {
		t.Helper()
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(r.ObjectPath(id)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: object not replaced (%d bytes, %v)", what, len(got), err)
		}
	}
	plant(id, nil)
	if _, _, created, err := r.WriteObject(bytes.NewReader(data)); err != nil || !created {
		t.Fatalf("WriteObject over a 0-byte object: created=%v %v", created, err)
	}
	check("WriteObject", id, data)

	plant(id, data[:4096])
	src := filepath.Join(t.TempDir(), "src")
	os.WriteFile(src, data, 0o644)
	if _, _, _, _, err := r.ImportFile(src, reflink.Auto); err != nil {
		t.Fatal(err)
	}
	check("ImportFile", id, data)

	// Same size, other bytes: only a comparison finds it, which
	// EnsureObject makes since it has the bytes.
	wrong := bytes.Clone(small)
	wrong[0] ^= 1
	plant(sid, wrong)
	if _, err := r.EnsureObject(small); err != nil {
		t.Fatal(err)
	}
	check("EnsureObject", sid, small)

	// A symlink planted under an object's name is replaced, not followed.
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, nil, 0o644)
	os.Remove(r.ObjectPath(id))
	os.Symlink(outside, r.ObjectPath(id))
	if _, _, _, err := r.WriteObject(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	check("WriteObject over a symlink", id, data)
	if st, _ := os.Stat(outside); st.Size() != 0 {
		t.Errorf("wrote through the planted symlink")
	}
}

// TestPlantedSymlinksNotFollowed: a symlink planted inside the repository
// (objects/XX, images, streams/refs/oci) must not make a write land
// outside it; the write is refused instead.
func TestPlantedSymlinksNotFollowed(t *testing.T) {
	data := bytes.Repeat([]byte("planted"), 100)
	id, _ := fsverity.Digest(bytes.NewReader(data), fsverity.SHA512)
	manifestDigest := "sha256:" + hex.EncodeToString(make([]byte, 32))
	for _, dir := range []string{"objects/" + hex.EncodeToString(id[:1]), "images", "streams/refs/oci"} {
		t.Run(dir, func(t *testing.T) {
			r := newRepo(t)
			outside := t.TempDir()
			os.MkdirAll(filepath.Dir(filepath.Join(r.Path(), dir)), 0o755)
			os.RemoveAll(filepath.Join(r.Path(), dir))
			if err := os.Symlink(outside, filepath.Join(r.Path(), dir)); err != nil {
				t.Fatal(err)
			}
			var err error
			switch dir {
			case "images":
				_, err = r.WriteImage(data)
			case "streams/refs/oci":
				ss, _ := splitstream.NewWriter(2, splitstream.ContentOCIManifest)
				if _, err := r.WriteStream(ManifestContentID(manifestDigest), ss); err != nil {
					t.Fatal(err)
				}
				err = r.SetTag("localhost/x", manifestDigest)
			default:
				if _, _, _, err = r.WriteObject(bytes.NewReader(data)); err == nil {
					err = r.Flush()
				}
			}
			if err == nil {
				t.Errorf("writing through a symlinked %s succeeded", dir)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("wrote outside the repository: %v", entries[0].Name())
			}
		})
	}
}
