package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// cstore is a containers-storage store made by skopeo, the way podman
// fills one, on a test filesystem.
type cstore struct {
	graph, run string
}

func (s cstore) ref(name string) string {
	return "containers-storage:[overlay@" + s.graph + "+" + s.run + "]" + name
}

// skopeoRef adds the driver option that keeps skopeo from leaving the
// overlay directory mounted on itself.
func (s cstore) skopeoRef(name string) string {
	return "containers-storage:[overlay@" + s.graph + "+" + s.run + ":overlay.skip_mount_home=true]" + name
}

func newCStore(t *testing.T, dir string) cstore {
	t.Helper()
	return cstore{graph: filepath.Join(dir, "storage"), run: filepath.Join(dir, "run")}
}

func skopeoCopy(t *testing.T, from, to string) {
	t.Helper()
	skopeo := testfs.RequireTool(t, "skopeo")
	cmd := exec.Command(skopeo, "--insecure-policy", "copy", "--quiet", from, to)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy %s %s: %v\n%s", from, to, err, out)
	}
}

// storeImage puts img into a fresh store on fs with skopeo, named name.
func storeImage(t *testing.T, fs *testfs.FS, img *testimage.Image, name string) cstore {
	t.Helper()
	layout := filepath.Join(fs.Dir, "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	s := newCStore(t, fs.Dir)
	skopeoCopy(t, "oci:"+layout+":latest", s.skopeoRef(name))
	return s
}

func TestPullFromContainersStorage(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	store := storeImage(t, fs, img, "localhost/cfs-cstor:1")

	// The same image pulled the ordinary way, for comparison.
	regRepo := filepath.Join(fs.Dir, "registry-composefs")
	reg := cfsPull(t, "--repo", regRepo, "--insecure-policy", "oci:"+filepath.Join(fs.Dir, "layout")+":latest")
	if reg.err != nil {
		t.Fatalf("cfs-pull oci: %v\n%s", reg.err, reg.stderr)
	}
	regRec, regEntries := readList(t, reg.stdout)

	repoDir := filepath.Join(fs.Dir, "composefs")
	res := cfsPull(t, "--repo", repoDir, "--reflink", "always", store.ref("localhost/cfs-cstor:1"))
	if res.err != nil {
		t.Fatalf("cfs-pull containers-storage: %v\n%s", res.err, res.stderr)
	}
	rec, entries := readList(t, res.stdout)
	if rec.Stores.Composefs.Image != regRec.Stores.Composefs.Image {
		t.Errorf("composefs image %s, a pull of the OCI layout gives %s", rec.Stores.Composefs.Image, regRec.Stores.Composefs.Image)
	}
	if rec.ManifestDigest != regRec.ManifestDigest || rec.Stores.Composefs.Tag != regRec.Stores.Composefs.Tag {
		t.Errorf("manifest %s tag %s, the OCI pull %s %s", rec.ManifestDigest, rec.Stores.Composefs.Tag, regRec.ManifestDigest, regRec.Stores.Composefs.Tag)
	}
	cs := rec.Stores.ContainersStorage
	if cs == nil || cs.ImageID != img.ConfigDigest.Encoded() || cs.Root != store.graph {
		t.Errorf("stores.containersStorage = %+v", cs)
	}
	if len(entries) != len(regEntries) {
		t.Errorf("%d entries, the OCI pull %d", len(entries), len(regEntries))
	}
	// Same streams: every name under streams/ points at the same object.
	for _, name := range []string{"streams"} {
		a, b := listLinks(t, filepath.Join(regRepo, name)), listLinks(t, filepath.Join(repoDir, name))
		if a != b {
			t.Errorf("%s differ:\nOCI pull:\n%s\ncontainers-storage:\n%s", name, a, b)
		}
	}

	// Every object's extents are the store's diff files' extents: the
	// same physical blocks, flagged shared.
	diffBlocks := map[uint64]uint64{} // physical start -> length
	err = filepath.Walk(filepath.Join(store.graph, "overlay"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() <= 64 || !strings.Contains(p, "/diff/") {
			return err
		}
		for _, x := range extentsOf(t, p) {
			diffBlocks[x.Physical] = x.Length
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range entries {
		if e.Type != stream.TypeFile || e.Src == "" {
			continue
		}
		files++
		for _, x := range extentsOf(t, e.Src) {
			if !x.Shared() || diffBlocks[x.Physical] != x.Length {
				t.Errorf("%s: object %s has an extent that is not a diff file's: %+v", e.Path, e.Src, x)
				break
			}
		}
	}
	if files == 0 {
		t.Fatal("no object files in the list")
	}

	// Again: nothing new.
	again := cfsPull(t, "--repo", repoDir, store.ref(img.ConfigDigest.Encoded()))
	if again.err != nil {
		t.Fatalf("second import: %v\n%s", again.err, again.stderr)
	}
	if !bytes.Contains(again.stderr, []byte("already present 3; objects reflinked 0")) {
		t.Errorf("second import wrote again:\n%s", again.stderr)
	}
}

func extentsOf(t *testing.T, path string) []reflink.Extent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exts, err := reflink.Extents(f)
	if err != nil {
		t.Fatal(err)
	}
	return exts
}

// listLinks lists the symlinks below dir with their targets, one a line.
func listLinks(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			b.WriteString(rel + " -> " + target + "\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// storeImageID is the image's layer IDs in the store, base first.
func storeLayers(t *testing.T, s cstore, ref string) []string {
	t.Helper()
	st, err := cstorage.Open(s.graph, s.run)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	img, err := st.FindImage(ref)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range img.Layers {
		ids = append(ids, l.ID)
	}
	return ids
}

// bigDiffFile is a file over 64 bytes in a layer's diff directory.
func bigDiffFile(t *testing.T, s cstore, layerID string) (path, member string) {
	t.Helper()
	diff := filepath.Join(s.graph, "overlay", layerID, "diff")
	err := filepath.Walk(diff, func(p string, fi os.FileInfo, err error) error {
		if err != nil || path != "" {
			return err
		}
		if fi.Mode().IsRegular() && fi.Size() > 4096 {
			path = p
		}
		return nil
	})
	if err != nil || path == "" {
		t.Fatalf("no large file in %s: %v", diff, err)
	}
	member, _ = filepath.Rel(diff, path)
	return path, member
}

// expectFailure runs cfs-pull and requires a one-line error mentioning
// every want, a non-zero exit, and no tag in the repository.
func expectFailure(t *testing.T, repoDir string, args []string, want ...string) {
	t.Helper()
	res := cfsPull(t, args...)
	msg := strings.TrimSpace(string(res.stderr))
	t.Logf("%s", msg)
	if res.err == nil {
		t.Fatalf("cfs-pull %v succeeded; want an error with %q", args, want)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line:\n%s", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if len(res.stdout) != 0 {
		t.Errorf("a failed pull wrote %d bytes of object list", len(res.stdout))
	}
	tags, _ := os.ReadDir(filepath.Join(repoDir, "streams", "refs", "oci"))
	if len(tags) != 0 {
		t.Errorf("a failed pull left tags: %v", tags)
	}
	if _, err := os.Stat(repoDir); err == nil {
		checkRepoConsistent(t, repoDir)
	}
}

// TestContainersStorageBadInput damages a store in each way the import
// must notice, and checks that each fails cleanly and that the next run,
// on the repaired store, succeeds.
func TestContainersStorageBadInput(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	const name = "localhost/cfs-bad:1"
	s := storeImage(t, fs, img, name)
	layers := storeLayers(t, s, name)
	repoDir := fs.Path("composefs")
	args := []string{"--repo", repoDir, "--quiet", "--output", "none", "--reflink", "always", s.ref(name)}
	succeed := func(what string) {
		t.Helper()
		res := cfsPull(t, args...)
		if res.err != nil {
			t.Fatalf("after %s: %v\n%s", what, res.err, res.stderr)
		}
		// Start the next case from an empty repository.
		if err := os.RemoveAll(repoDir); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("EditedDiffFile", func(t *testing.T) {
		path, member := bigDiffFile(t, s, layers[0])
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		edited := bytes.Clone(orig)
		edited[len(edited)/2] ^= 0xff
		if err := os.WriteFile(path, edited, 0o644); err != nil {
			t.Fatal(err)
		}
		expectFailure(t, repoDir, args, layers[0], member, "CRC64")
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		succeed("restoring the file")
	})

	t.Run("MissingDiffFile", func(t *testing.T) {
		path, member := bigDiffFile(t, s, layers[1])
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		expectFailure(t, repoDir, args, layers[1], member, "missing")
		if err := os.WriteFile(path, orig, fi.Mode()); err != nil {
			t.Fatal(err)
		}
		succeed("restoring the file")
	})

	t.Run("TarSplitLiesAboutSize", func(t *testing.T) {
		tsPath := filepath.Join(s.graph, "overlay-layers", layers[0]+".tar-split.gz")
		orig, err := os.ReadFile(tsPath)
		if err != nil {
			t.Fatal(err)
		}
		member := rewriteTarSplit(t, tsPath, orig, func(e *tsstorage.Entry) bool {
			if e.Type == tsstorage.FileType && e.Size > 64 {
				e.Size++
				return true
			}
			return false
		})
		expectFailure(t, repoDir, args, layers[0], member, "tar-split says")
		if err := os.WriteFile(tsPath, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		succeed("restoring the tar-split")
	})

	t.Run("DiffIDNotInConfig", func(t *testing.T) {
		layersJSON := filepath.Join(s.graph, "overlay-layers", "layers.json")
		orig, err := os.ReadFile(layersJSON)
		if err != nil {
			t.Fatal(err)
		}
		wrong := "sha256:" + strings.Repeat("0", 64)
		edited := bytes.Replace(orig, []byte(img.DiffIDs[1].String()), []byte(wrong), 1)
		if bytes.Equal(edited, orig) {
			t.Fatal("layers.json does not carry the diff ID")
		}
		if err := os.WriteFile(layersJSON, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		expectFailure(t, repoDir, args, layers[1], wrong, img.DiffIDs[1].String())
		if err := os.WriteFile(layersJSON, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		succeed("restoring layers.json")
	})

	t.Run("ImageNotThere", func(t *testing.T) {
		bad := append(append([]string{}, args[:len(args)-1]...), s.ref("localhost/cfs-absent:1"))
		expectFailure(t, repoDir, bad, "localhost/cfs-absent:1", "not in the store")
		succeed("naming the image that is there")
	})

	t.Run("NoTarSplit", func(t *testing.T) {
		tsPath := filepath.Join(s.graph, "overlay-layers", layers[2]+".tar-split.gz")
		orig, err := os.ReadFile(tsPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(tsPath); err != nil {
			t.Fatal(err)
		}
		expectFailure(t, repoDir, args, layers[2], "no tar-split", "--reflink=auto")
		if err := os.WriteFile(tsPath, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		succeed("restoring the tar-split")
	})
}

// rewriteTarSplit rewrites a layer's tar-split with edit applied to the
// first entry it accepts, and returns that entry's name.
func rewriteTarSplit(t *testing.T, path string, orig []byte, edit func(*tsstorage.Entry) bool) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	dec, enc := json.NewDecoder(zr), json.NewEncoder(zw)
	name := ""
	for {
		var e tsstorage.Entry
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if name == "" && edit(&e) {
			name = e.GetName()
		}
		if err := enc.Encode(&e); err != nil {
			t.Fatal(err)
		}
	}
	zw.Close()
	if name == "" {
		t.Fatal("no tar-split entry to edit")
	}
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestContainersStorageOnExt4: where nothing can be shared, always fails
// before anything is written and auto copies, with the same result.
func TestContainersStorageOnExt4(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.Ext4(t, 256*testfs.MiB)
	img, err := testimage.Generate(testimage.Options{Seed: 13})
	if err != nil {
		t.Fatal(err)
	}
	const name = "localhost/cfs-ext4:1"
	s := storeImage(t, fs, img, name)
	repoDir := fs.Path("composefs")
	expectFailure(t, repoDir, []string{"--repo", repoDir, "--quiet", "--reflink", "always", s.ref(name)}, "--reflink=always", "does not support reflinks", "--reflink=auto")
	if code := exitStatus(cfsPull(t, "--repo", repoDir, "--quiet", "--reflink", "always", s.ref(name)).err); code != 5 {
		t.Errorf("always on ext4: exit status %d, want 5 (reflinks refused)", code)
	}
	if objs, _ := filepath.Glob(filepath.Join(repoDir, "objects", "*", "*")); len(objs) != 0 {
		t.Errorf("always on ext4 wrote %d objects before failing", len(objs))
	}
	res := cfsPull(t, "--repo", repoDir, "--reflink", "auto", s.ref(name))
	if res.err != nil {
		t.Fatalf("auto on ext4: %v\n%s", res.err, res.stderr)
	}
	if !regexp.MustCompile(`objects reflinked 0 \(0 B\), copied [1-9][0-9]* \(9\.8 MiB\)`).Match(res.stderr) {
		t.Errorf("auto on ext4 did not say what it copied:\n%s", res.stderr)
	}
	rec, _ := readList(t, res.stdout)
	ociRes := cfsPull(t, "--repo", fs.Path("oci-composefs"), "--insecure-policy", "--output", "none", "oci:"+fs.Path("layout")+":latest")
	if ociRes.err != nil {
		t.Fatalf("cfs-pull oci: %v\n%s", ociRes.err, ociRes.stderr)
	}
	if !bytes.Contains(ociRes.stderr, []byte(rec.Stores.Composefs.Image)) {
		t.Errorf("composefs image %s is not the OCI pull's:\n%s", rec.Stores.Composefs.Image, ociRes.stderr)
	}
}

func exitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestContainersStorageImageDeletedMidImport deletes the image from the
// store while cfs-pull is between two layers: cfs-pull is held there by
// its progress pipe, which the test has filled, so the deletion always
// lands mid-import.
func TestContainersStorageImageDeletedMidImport(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 14})
	if err != nil {
		t.Fatal(err)
	}
	const name = "localhost/cfs-deleted:1"
	s := storeImage(t, fs, img, name)
	repoDir := fs.Path("composefs")

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// One page of pipe, full but for the progress Start line: the next
	// progress line, sent when the first layer is done, blocks.
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	start := `{"type":"Start","version":"0.1.0"}` + "\n"
	if _, err := pw.Write(bytes.Repeat([]byte{'#'}, 4096-len(start))); err != nil {
		t.Fatal(err)
	}
	// One layer at a time, biggest (the first) first.
	cmd := exec.Command(binary, "--repo", repoDir, "--quiet", "--output", "none", "--progress-fd", "3", "--jobs", "1", s.ref(name))
	cmd.ExtraFiles = []*os.File{pw}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	first := filepath.Join(repoDir, "streams", "oci-layer-"+img.DiffIDs[0].String())
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Lstat(first); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the first layer never appeared: %s", errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// cfs-pull now waits to report the first layer; delete the image.
	st, err := cstorage.Open(s.graph, s.run)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Storage().DeleteImage(img.ConfigDigest.Encoded(), true); err != nil {
		t.Fatal(err)
	}
	st.Close()
	go io.Copy(io.Discard, pr)
	err = cmd.Wait()
	msg := strings.TrimSpace(errb.String())
	t.Logf("%s", msg)
	if err == nil || strings.Contains(msg, "\n") || !strings.Contains(msg, "containers-storage layer") {
		t.Errorf("import of a deleted image: %v, %q; want a one-line error naming the layer", err, msg)
	}
	if tags, _ := os.ReadDir(filepath.Join(repoDir, "streams", "refs", "oci")); len(tags) != 0 {
		t.Errorf("tags after a failed import: %v", tags)
	}
	checkRepoConsistent(t, repoDir)

	// Put the image back: the next run completes.
	skopeoCopy(t, "oci:"+fs.Path("layout")+":latest", s.skopeoRef(name))
	if res := cfsPull(t, "--repo", repoDir, "--quiet", "--output", "none", s.ref(name)); res.err != nil {
		t.Fatalf("after restoring the image: %v\n%s", res.err, res.stderr)
	}
}

// TestPullFromContainersStoragePinned names the image by manifest digest,
// as set-unified full does for a deployment: the digest picks the image
// whatever its names, and a digest no image has is refused.
func TestPullFromContainersStoragePinned(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	store := storeImage(t, fs, img, "localhost/cfs-cstor:1")
	md := img.ManifestDigest.String()
	for _, name := range []string{"localhost/cfs-cstor@" + md, "quay.io/other/name@" + md} {
		res := cfsPull(t, "--repo", fs.Path("composefs"), store.ref(name))
		if res.err != nil {
			t.Fatalf("cfs-pull %s: %v\n%s", name, res.err, res.stderr)
		}
		rec, _ := readList(t, res.stdout)
		if rec.ManifestDigest != md || rec.Stores.Composefs.Tag != "localhost/bootc-"+md {
			t.Errorf("%s: manifest %s tag %s", name, rec.ManifestDigest, rec.Stores.Composefs.Tag)
		}
	}
	wrong := "sha256:" + strings.Repeat("0", 64)
	res := cfsPull(t, "--repo", fs.Path("composefs"), store.ref("localhost/cfs-cstor@"+wrong))
	if res.err == nil || !strings.Contains(string(res.stderr), "no image has manifest "+wrong) {
		t.Errorf("unknown digest: %v\n%s", res.err, res.stderr)
	}
}
