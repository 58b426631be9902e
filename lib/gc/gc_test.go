package gc_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testhost"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/gc"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/splitstream"
	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// checkComplete proves an image is whole: manifest and config open, every
// layer stream reassembles to its diff ID, and every object of its EROFS
// image exists.
func checkComplete(t *testing.T, repoPath, manifestDigest string) {
	t.Helper()
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	img, err := oci.OpenImage(repo, manifestDigest)
	if err != nil {
		t.Fatalf("image %s: %v", manifestDigest, err)
	}
	for _, d := range img.DiffIDs {
		sr, _, err := repo.OpenStream(composefs.LayerContentID(d), splitstream.ContentOCILayer)
		if err != nil {
			t.Fatalf("image %s: layer %s: %v", manifestDigest, d, err)
		}
		h := sha256.New()
		_, err = sr.Reassemble(h, func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) })
		sr.Close()
		if err != nil {
			t.Fatalf("image %s: layer %s: %v", manifestDigest, d, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
			t.Fatalf("image %s: layer %s reassembles to %s", manifestDigest, d, got)
		}
	}
	if img.ImageID == nil {
		t.Fatalf("image %s names no EROFS image", manifestDigest)
	}
	data, err := os.ReadFile(repo.ObjectPath(img.ImageID))
	if err != nil {
		t.Fatalf("image %s: EROFS image: %v", manifestDigest, err)
	}
	e, err := erofs.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *erofs.Node)
	walk = func(n *erofs.Node) {
		if n.LinkTo == nil && n.Payload != "" && n.Mode&erofs.TypeMask == erofs.TypeRegular {
			if _, err := os.Stat(filepath.Join(repoPath, "objects", n.Payload)); err != nil {
				t.Errorf("image %s: %s: object %s: %v", manifestDigest, n.Name, n.Payload, err)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(e.Root)
}

// listing is every name below dir with its type, size, link target and
// mtime: a dry run must leave it unchanged.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ = os.Readlink(p)
		}
		mtime := ""
		if strings.HasSuffix(p, ".lock") || filepath.Base(p) == "backingFsBlockDev" {
			// containers-storage's bookkeeping, which every client
			// (podman images included) touches: its lock files record a
			// write counter when the store shuts down, and the overlay
			// driver (built with cgo) re-creates the device node of its XFS quotas
			// each time it starts. Neither is content.
			return nil
		}
		if !d.IsDir() {
			mtime = fi.ModTime().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(&b, "%s %v %d %s %s\n", p, fi.Mode(), fi.Size(), target, mtime)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func cstorImages(t *testing.T, root, runRoot string) map[string][]string {
	t.Helper()
	s, err := cstorage.Open(cstorage.DefaultGraphRoot(root), runRoot)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	imgs, err := s.Storage().Images()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, im := range imgs {
		out[im.ID] = im.Names
	}
	return out
}

func configHex(im sysroottest.Image) string {
	return strings.TrimPrefix(oci.Digest(im.Config()), "sha256:")
}

func tags(t *testing.T, repoPath string) []string {
	t.Helper()
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	list, err := repo.Tags()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(list)
	return list
}

// TestCollectComposefsHost: four releases pulled, the deployments pin the
// last two; a foreign tag holds the first. Everything is also in
// containers-storage, the rollback image without a name. After a dry run
// (which changes nothing) and a collection, only what is pinned or
// foreign-tagged remains, whole, in both stores.
func TestCollectComposefsHost(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	repoPath := filepath.Join(root, "composefs")
	runRoot := fs.Path("cstor-run")
	var ims []sysroottest.Image
	for i := 0; i < 4; i++ {
		v := fmt.Sprintf("1.%d", i)
		ims = append(ims, testhost.Pull(t, repoPath, fs.Dir, testhost.Generate(t, 9, v), "ostree-unverified-registry:quay.io/example/os:"+v))
	}
	host := sysroottest.Composefs(t, root, []sysroottest.Deployment{{Image: ims[3]}, {Image: ims[2]}}, 0, sysroottest.BLS, false)
	if err := sysroot.WriteBootcJSON(root, sysroot.UnifiedEnabled); err != nil {
		t.Fatal(err)
	}
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.SetTag("quay.io/other/app:1", ims[0].ManifestDigest()); err != nil {
		t.Fatal(err)
	}
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(root), runRoot)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close() // also on a failure: the filesystem must unmount
	for i, im := range ims {
		// Each pull of the reference takes the name from the previous
		// image: all but the last are nameless.
		names := []string{}
		if i == len(ims)-1 {
			names = []string{"quay.io/example/os:latest"}
		}
		if _, err := clone.RestoreImage(store, repo, im.ManifestDigest(), names, 0); err != nil {
			t.Fatalf("image %d into containers-storage: %v", i, err)
		}
	}
	// An image that is not bootc's: never touched.
	other := testhost.Generate(t, 77, "9.9")
	otherIm := testhost.Pull(t, repoPath, fs.Dir, other, "")
	if _, err := clone.RestoreImage(store, repo, otherIm.ManifestDigest(), []string{"quay.io/lbi/sidecar:1"}, 0); err != nil {
		t.Fatal(err)
	}
	store.Close()
	repo.Close()
	// The LBI's composefs copy is collected, its containers-storage image
	// is not: pulling it into composefs made its config known, so drop
	// the config stream to model an image only podman pulled.
	os.Remove(filepath.Join(repoPath, "streams", "oci-config-"+oci.Digest(otherIm.Config())))

	h, err := sysroot.Load(root, sysroot.Options{Cmdline: host.Cmdline})
	if err != nil {
		t.Fatal(err)
	}
	before := listing(t, fs.Dir)
	dry, err := gc.Collect(h, gc.Options{DryRun: true, RunRoot: runRoot})
	if err != nil {
		t.Fatal(err)
	}
	if after := listing(t, fs.Dir); after != before {
		t.Errorf("--dry-run changed the tree")
		logDiff(t, before, after)
	}

	res, err := gc.Collect(h, gc.Options{RunRoot: runRoot})
	if err != nil {
		t.Fatal(err)
	}
	res.DryRun = true
	if !reflect.DeepEqual(dry, res) {
		t.Errorf("dry run %+v\ncollection %+v", dry, res)
	}
	t.Logf("%+v", res)
	wantUntagged := []string{"localhost/bootc-" + ims[0].ManifestDigest(), "localhost/bootc-" + ims[1].ManifestDigest(), "localhost/bootc-" + otherIm.ManifestDigest()}
	sort.Strings(wantUntagged)
	if !reflect.DeepEqual(res.Untagged, wantUntagged) {
		t.Errorf("untagged %v, want %v", res.Untagged, wantUntagged)
	}
	if len(res.ContainersStorage) != 1 || res.ContainersStorage[0].ID != configHex(ims[1]) {
		t.Errorf("containers-storage removed %+v, want only image 1 (%s)", res.ContainersStorage, configHex(ims[1]))
	}
	if res.ObjectsRemoved == 0 || res.ObjectsBytes == 0 || res.StreamsPruned == 0 || res.ImagesPruned == 0 {
		t.Errorf("nothing swept: %+v", res)
	}

	wantTags := []string{"localhost/bootc-" + ims[2].ManifestDigest(), "localhost/bootc-" + ims[3].ManifestDigest(), "quay.io/other/app:1"}
	sort.Strings(wantTags)
	if got := tags(t, repoPath); !reflect.DeepEqual(got, wantTags) {
		t.Errorf("tags %v, want %v", got, wantTags)
	}
	for _, i := range []int{0, 2, 3} {
		checkComplete(t, repoPath, ims[i].ManifestDigest())
	}
	// Image 1's manifest is gone with its stream.
	if _, err := os.Lstat(filepath.Join(repoPath, "streams", "oci-manifest-"+ims[1].ManifestDigest())); !os.IsNotExist(err) {
		t.Errorf("image 1's manifest stream survived: %v", err)
	}
	got := cstorImages(t, root, runRoot)
	for _, i := range []int{0, 2, 3} {
		if _, ok := got[configHex(ims[i])]; !ok {
			t.Errorf("containers-storage lost image %d", i)
		}
	}
	if _, ok := got[configHex(otherIm)]; !ok {
		t.Error("containers-storage lost the image that is not bootc's")
	}
	if len(got) != 4 {
		t.Errorf("containers-storage holds %d images, want 4", len(got))
	}

	// Nothing left to do.
	again, err := gc.Collect(h, gc.Options{RunRoot: runRoot})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Untagged)+len(again.ContainersStorage)+again.ObjectsRemoved+again.ImagesPruned+again.StreamsPruned != 0 {
		t.Errorf("second collection removed more: %+v", again)
	}
}

func logDiff(t *testing.T, a, b string) {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	seen := map[string]bool{}
	for _, l := range al {
		seen[l] = true
	}
	for _, l := range bl {
		if !seen[l] {
			t.Logf("+ %s", l)
		}
	}
	seen = map[string]bool{}
	for _, l := range bl {
		seen[l] = true
	}
	for _, l := range al {
		if !seen[l] {
			t.Logf("- %s", l)
		}
	}
}

// TestCollectOstreeHost: on ostree hosts the deployments' commits say
// which images are live (ostree.manifest-digest), a staged deployment
// included.
func TestCollectOstreeHost(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	repoPath := filepath.Join(root, "composefs")
	var ims []sysroottest.Image
	for i := 0; i < 4; i++ {
		v := fmt.Sprintf("2.%d", i)
		ims = append(ims, testhost.Pull(t, repoPath, fs.Dir, testhost.Generate(t, 11, v), "ostree-unverified-registry:quay.io/example/os:"+v))
		ims[i].Synthesized = true
	}
	host := sysroottest.Ostree(t, root, []sysroottest.Deployment{{Image: ims[2]}, {Image: ims[1]}, {Image: ims[3], Staged: true}}, 0)
	// No run directory given: the staged deployment is found on disk.
	h, err := sysroot.Load(root, sysroot.Options{Cmdline: host.Cmdline})
	if err != nil {
		t.Fatal(err)
	}
	res, err := gc.Collect(h, gc.Options{RunRoot: fs.Path("run")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"localhost/bootc-" + ims[0].ManifestDigest()}; !reflect.DeepEqual(res.Untagged, want) {
		t.Errorf("untagged %v, want %v", res.Untagged, want)
	}
	for _, i := range []int{1, 2, 3} {
		checkComplete(t, repoPath, ims[i].ManifestDigest())
	}
}

// TestPullDuringCollect: a pull started while the collection holds the
// lock waits for it, then stores a complete image that survives; a
// collection started while a pull holds the repository waits for the pull.
func TestPullDuringCollect(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	repoPath := filepath.Join(root, "composefs")
	old := testhost.Pull(t, repoPath, fs.Dir, testhost.Generate(t, 13, "3.0"), "ostree-unverified-registry:quay.io/example/os:3.0")
	cur := testhost.Pull(t, repoPath, fs.Dir, testhost.Generate(t, 13, "3.1"), "ostree-unverified-registry:quay.io/example/os:3.1")
	host := sysroottest.Composefs(t, root, []sysroottest.Deployment{{Image: cur}}, 0, sysroottest.BLS, false)
	h, err := sysroot.Load(root, sysroot.Options{Cmdline: host.Cmdline})
	if err != nil {
		t.Fatal(err)
	}
	next := testhost.Generate(t, 13, "3.2")
	nextLayout := fs.Path("next")
	if err := os.MkdirAll(nextLayout, 0o755); err != nil {
		t.Fatal(err)
	}

	var pulled chan sysroottest.Image
	res, err := gc.Collect(h, gc.Options{RunRoot: fs.Path("run"), Locked: func() {
		pulled = make(chan sysroottest.Image, 1)
		go func() {
			im, err := testhost.PullErr(repoPath, nextLayout, next, "")
			if err != nil {
				t.Errorf("the pull started during the collection: %v", err)
			}
			pulled <- im
		}()
		// The pull is blocked on the lock; give it time to be.
		time.Sleep(300 * time.Millisecond)
		select {
		case <-pulled:
			t.Error("the pull finished while the collection held the lock")
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"localhost/bootc-" + old.ManifestDigest()}; !reflect.DeepEqual(res.Untagged, want) {
		t.Errorf("untagged %v, want %v", res.Untagged, want)
	}
	im := <-pulled
	checkComplete(t, repoPath, im.ManifestDigest())
	checkComplete(t, repoPath, cur.ManifestDigest())

	// The other way round: a repository handle open (a pull under way)
	// makes the collection wait until it is closed.
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := gc.Collect(h, gc.Options{RunRoot: fs.Path("run")})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the collection did not wait for an open repository (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	repo.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCollectKeepsCStorageImageOfOstreeCommit: the booted ostree commit's
// image is gone from composefs, but containers-storage still holds it
// (under bootc's recovered name): the commit's own config digest protects
// it.
func TestCollectKeepsCStorageImageOfOstreeCommit(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	repoPath := filepath.Join(root, "composefs")
	runRoot := fs.Path("run")
	im := testhost.Pull(t, repoPath, fs.Dir, testhost.Generate(t, 15, "4.0"), "ostree-unverified-registry:quay.io/example/os:4.0")
	im.Synthesized = true
	host := sysroottest.Ostree(t, root, []sysroottest.Deployment{{Image: im}}, 0)
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(root), runRoot)
	if err != nil {
		repo.Close()
		t.Fatal(err)
	}
	_, err = clone.RestoreImage(store, repo, im.ManifestDigest(), nil, 0)
	store.Close()
	repo.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(repoPath, "streams", "refs", "oci", composefs.EncodeTag("localhost/bootc-"+im.ManifestDigest())),
		filepath.Join(repoPath, "streams", "oci-manifest-"+im.ManifestDigest()),
	} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	h, err := sysroot.Load(root, sysroot.Options{Cmdline: host.Cmdline})
	if err != nil {
		t.Fatal(err)
	}
	res, err := gc.Collect(h, gc.Options{RunRoot: runRoot})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ContainersStorage) != 0 {
		t.Errorf("removed the booted commit's image from containers-storage: %+v", res.ContainersStorage)
	}
	if _, ok := cstorImages(t, root, runRoot)[configHex(im)]; !ok {
		t.Error("the booted commit's image is gone from containers-storage")
	}
}
