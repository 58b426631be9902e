package fsck_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testhost"
	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/fsck"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture is a sysroot on a loop XFS with real images in composefs.
type fixture struct {
	t       *testing.T
	fs      *testfs.FS
	root    string
	images  []sysroottest.Image
	host    *sysroottest.Host
	runRoot string
	// placeholders replaces digests (which depend on the compressor's
	// version) in output compared with golden files.
	placeholders *strings.Replacer
}

// newFixture pulls n releases of one image into <root>/composefs.
func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	f := &fixture{t: t, fs: fs, root: fs.Path("sysroot"), runRoot: fs.Path("cstor-run")}
	var pairs []string
	for i := 0; i < n; i++ {
		img := testhost.Generate(t, 5, "1."+string(rune('0'+i)))
		im := testhost.Pull(t, filepath.Join(f.root, "composefs"), fs.Dir, img, "ostree-unverified-registry:quay.io/example/os:1."+string(rune('0'+i)))
		f.images = append(f.images, im)
		tag := "M" + string(rune('1'+i))
		pairs = append(pairs, img.ManifestDigest.String(), "<"+tag+">", img.ConfigDigest.Encoded()[:12], "<C"+string(rune('1'+i))+">")
	}
	f.placeholders = strings.NewReplacer(pairs...)
	return f
}

func (f *fixture) load() *sysroot.Host {
	f.t.Helper()
	h, err := sysroot.Load(f.root, sysroot.Options{Cmdline: f.host.Cmdline, RunDir: f.host.RunDir})
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// fsck runs the image check and returns its human lines, its JSON and
// whether it passed.
func (f *fixture) fsck(repair bool) (string, string, bool) {
	f.t.Helper()
	var out bytes.Buffer
	rep, err := fsck.Images(f.load(), fsck.ImagesOptions{Repair: repair, Out: &out, RunRoot: f.runRoot})
	if err != nil {
		f.t.Fatalf("fsck images: %v", err)
	}
	// --json runs the check again without human lines; a repair must not
	// be repeated, so marshal the report of this run.
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		f.t.Fatal(err)
	}
	return f.placeholders.Replace(out.String()), f.placeholders.Replace(b.String()), rep.OK
}

func (f *fixture) golden(name, got string) {
	f.t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		f.t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		f.t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func (f *fixture) cstorIDs() map[string][]string {
	f.t.Helper()
	s, err := cstorage.Open(cstorage.DefaultGraphRoot(f.root), f.runRoot)
	if err != nil {
		f.t.Fatal(err)
	}
	defer s.Close()
	imgs, err := s.Storage().Images()
	if err != nil {
		f.t.Fatal(err)
	}
	ids := map[string][]string{}
	for _, im := range imgs {
		ids[im.ID] = im.Names
	}
	return ids
}

func (f *fixture) removeTag(i int) {
	f.t.Helper()
	if err := os.Remove(filepath.Join(f.root, "composefs", "streams", "refs", "oci", composefs.EncodeTag(bootcconv.TagPrefix+f.images[i].ManifestDigest()))); err != nil {
		f.t.Fatal(err)
	}
}

// TestImagesUnifiedComposefs: a composefs-native host with booted and
// rollback images in composefs and, at first, nothing in
// containers-storage.
func TestImagesUnifiedComposefs(t *testing.T) {
	f := newFixture(t, 2)
	f.host = sysroottest.Composefs(t, f.root, []sysroottest.Deployment{{Image: f.images[1]}, {Image: f.images[0]}}, 0, sysroottest.BLS, false)
	if err := sysroot.WriteBootcJSON(f.root, sysroot.UnifiedEnabled); err != nil {
		t.Fatal(err)
	}

	human, js, ok := f.fsck(false)
	if ok {
		t.Error("fsck passed with both images missing from containers-storage")
	}
	f.golden("unified-missing.txt", human)
	f.golden("unified-missing.json", js+"\n")

	human, js, ok = f.fsck(true)
	if !ok {
		t.Errorf("repair did not pass:\n%s", human)
	}
	f.golden("unified-repair.txt", human)
	f.golden("unified-repair.json", js+"\n")
	ids := f.cstorIDs()
	for _, im := range f.images {
		id := strings.TrimPrefix(oci.Digest(im.Config()), "sha256:")
		if names := ids[id]; len(names) != 1 || names[0] != "localhost/bootc-recovered:"+id[:12] {
			t.Errorf("containers-storage image %s: names %v", id, names)
		}
	}

	human, js, ok = f.fsck(false)
	if !ok {
		t.Errorf("second fsck failed:\n%s", human)
	}
	f.golden("unified-ok.txt", human)
	f.golden("unified-ok.json", js+"\n")

	// A pinned deployment's tag removed: reported, then re-created.
	f.removeTag(1)
	human, _, ok = f.fsck(false)
	if ok || !strings.Contains(human, "[FAIL] quay.io/example/os:1.1: no composefs tag backs this deployment") {
		t.Errorf("a removed tag went unseen:\n%s", human)
	}
	human, _, ok = f.fsck(true)
	if !ok || !strings.Contains(human, "[REPAIRED] Re-tagged quay.io/example/os:1.1 successfully") {
		t.Errorf("the tag was not re-created:\n%s", human)
	}
	if human, _, ok = f.fsck(false); !ok {
		t.Errorf("fsck after re-tagging:\n%s", human)
	}
}

// TestImagesDisabled: nothing to check, bootc's line and JSON.
func TestImagesDisabled(t *testing.T) {
	f := newFixture(t, 1)
	f.host = sysroottest.Composefs(t, f.root, []sysroottest.Deployment{{Image: f.images[0]}}, 0, sysroottest.BLS, false)
	human, js, ok := f.fsck(false)
	if !ok {
		t.Error("disabled host failed")
	}
	f.golden("disabled.txt", human)
	f.golden("disabled.json", js+"\n")
}

// TestImagesBoundOnly: an ostree host whose repository is bound to
// composefs: a synthesized booted commit, a rollback that predates the
// binding, a stale tag; then the booted image's tag removed.
func TestImagesBoundOnly(t *testing.T) {
	f := newFixture(t, 3)
	booted := f.images[1]
	booted.Synthesized = true
	f.host = sysroottest.Ostree(t, f.root, []sysroottest.Deployment{{Image: booted}, {Image: f.images[0]}}, 0)
	if err := sysroot.SetRepoFlag(f.root); err != nil {
		t.Fatal(err)
	}
	human, js, ok := f.fsck(false)
	if !ok {
		t.Errorf("bound-only host failed:\n%s", human)
	}
	f.golden("bound-ok.txt", human)
	f.golden("bound-ok.json", js+"\n")

	f.removeTag(1)
	human, js, ok = f.fsck(false)
	if ok {
		t.Error("a removed tag passed")
	}
	f.golden("bound-notag.txt", human)
	f.golden("bound-notag.json", js+"\n")
	human, _, ok = f.fsck(true)
	if !ok || !strings.Contains(human, "[REPAIRED] Re-tagged") {
		t.Errorf("repair:\n%s", human)
	}
	if human, _, ok = f.fsck(false); !ok {
		t.Errorf("after repair:\n%s", human)
	}
}

// TestImagesBoundOnlyPending: set-unified composefs done, no reboot yet:
// the booted commit is not synthesized.
func TestImagesBoundOnlyPending(t *testing.T) {
	f := newFixture(t, 1)
	f.host = sysroottest.Ostree(t, f.root, []sysroottest.Deployment{{Image: f.images[0]}}, 0)
	if err := sysroot.SetRepoFlag(f.root); err != nil {
		t.Fatal(err)
	}
	human, js, ok := f.fsck(false)
	if !ok {
		t.Errorf("pending host failed:\n%s", human)
	}
	f.golden("bound-pending.txt", human)
	f.golden("bound-pending.json", js+"\n")
}

// TestImagesUnifiedOstree: on ostree hosts every bootc tag is live (bootc
// has no bootloader filter there); a deleted containers-storage image is
// restored.
func TestImagesUnifiedOstree(t *testing.T) {
	f := newFixture(t, 2)
	booted := f.images[1]
	booted.Synthesized = true
	f.host = sysroottest.Ostree(t, f.root, []sysroottest.Deployment{{Image: booted}}, 0)
	if err := sysroot.SetRepoFlag(f.root); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.root, "composefs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sysroot.WriteBootcJSON(f.root, sysroot.UnifiedEnabled); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.fsck(true); !ok {
		t.Fatal("repair failed")
	}
	if len(f.cstorIDs()) != 2 {
		t.Errorf("containers-storage holds %d images, want both tagged ones", len(f.cstorIDs()))
	}
	// Delete one from containers-storage: reported, restored.
	s, err := cstorage.Open(cstorage.DefaultGraphRoot(f.root), f.runRoot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Storage().DeleteImage(strings.TrimPrefix(oci.Digest(f.images[0].Config()), "sha256:"), true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	human, js, ok := f.fsck(false)
	if ok {
		t.Error("a deleted containers-storage image passed")
	}
	f.golden("unified-ostree-missing.txt", human)
	f.golden("unified-ostree-missing.json", js+"\n")
	if human, _, ok = f.fsck(true); !ok {
		t.Errorf("repair:\n%s", human)
	}
	if human, _, ok = f.fsck(false); !ok {
		t.Errorf("after repair:\n%s", human)
	}
}
