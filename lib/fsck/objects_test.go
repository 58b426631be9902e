package fsck_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testhost"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsck"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/splitstream"
	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

func (f *fixture) objects(repair bool) *fsck.ObjectsReport {
	f.t.Helper()
	rep, err := fsck.Objects(f.load(), fsck.ObjectsOptions{Repair: repair, RunRoot: f.runRoot})
	if err != nil {
		f.t.Fatalf("fsck objects: %v", err)
	}
	var b bytes.Buffer
	rep.WriteHuman(&b)
	f.t.Logf("fsck objects (repair %v):\n%s", repair, b.String())
	return rep
}

func has(rep *fsck.ObjectsReport, code, path, image string) bool {
	for _, p := range rep.Problems {
		if p.Code != code || p.Path != path {
			continue
		}
		if image == "" {
			return true
		}
		for _, im := range p.Images {
			if im == image {
				return true
			}
		}
	}
	return false
}

// bigObjects returns objects (>64 bytes) the image's EROFS image
// redirects to.
func bigObjects(t *testing.T, repoPath, manifestDigest string, n int) []string {
	t.Helper()
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	img, err := oci.OpenImage(repo, manifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(repo.ObjectPath(img.ImageID))
	if err != nil {
		t.Fatal(err)
	}
	e, err := erofs.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	var walk func(n *erofs.Node)
	walk = func(nd *erofs.Node) {
		if nd.LinkTo == nil && nd.Payload != "" && nd.Mode&erofs.TypeMask == erofs.TypeRegular && nd.Size > 4096 && !seen[nd.Payload] && len(out) < n {
			seen[nd.Payload] = true
			out = append(out, filepath.Join(repoPath, "objects", nd.Payload))
		}
		for _, c := range nd.Children {
			walk(c)
		}
	}
	walk(e.Root)
	if len(out) < n {
		t.Fatalf("only %d large objects", len(out))
	}
	return out
}

// TestObjectsDamage: each kind of damage is reported with its code, path
// and image; --repair restores what containers-storage still holds (the
// layers cloned from composefs), removes stray files and drops what it
// cannot restore; a re-pull then leaves a clean repository.
func TestObjectsDamage(t *testing.T) {
	f := newFixture(t, 1)
	f.host = sysroottest.Composefs(t, f.root, []sysroottest.Deployment{{Image: f.images[0]}}, 0, sysroottest.BLS, false)
	if err := sysroot.WriteBootcJSON(f.root, sysroot.UnifiedEnabled); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.fsck(true); !ok { // into containers-storage
		t.Fatal("restore into containers-storage failed")
	}
	if rep := f.objects(false); !rep.OK || rep.ObjectsChecked == 0 || rep.CStorageLayers == 0 {
		t.Fatalf("clean repository: %+v", rep)
	}

	repoPath := filepath.Join(f.root, "composefs")
	md := f.images[0].ManifestDigest()
	tag := "localhost/bootc-" + md
	objs := bigObjects(t, repoPath, md, 2)
	flipped, deleted := objs[0], objs[1]
	b, err := os.ReadFile(flipped)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	os.Chmod(flipped, 0o644)
	if err := os.WriteFile(flipped, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	// A layer stream's object, truncated.
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := oci.OpenImage(repo, md)
	if err != nil {
		t.Fatal(err)
	}
	_, sid, err := repo.OpenStream(composefs.LayerContentID(img.DiffIDs[0]), splitstream.ContentOCILayer)
	if err != nil {
		t.Fatal(err)
	}
	truncated := repo.ObjectPath(sid)
	repo.Close()
	if err := os.Truncate(truncated, 100); err != nil {
		t.Fatal(err)
	}
	strayTop := filepath.Join(repoPath, "objects", ".tmp-object-crashed")
	strayXX := filepath.Join(filepath.Dir(flipped), "leftover.tmp")
	for _, p := range []string{strayTop, strayXX} {
		if err := os.WriteFile(p, []byte("half written"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	rep := f.objects(false)
	if rep.OK {
		t.Error("damaged repository passed")
	}
	for _, want := range []struct{ code, path, image string }{
		{fsck.CodeObjectDigestMismatch, flipped, tag},
		{fsck.CodeObjectDigestMismatch, truncated, tag},
		{fsck.CodeImageMissingObject, filepath.Join(repoPath, "images", f.images[0].ImageVerity), tag},
		{fsck.CodeStreamInvalid, filepath.Join(repoPath, "streams", composefs.LayerContentID(img.DiffIDs[0])), tag},
		{fsck.CodeStrayFile, strayTop, ""},
		{fsck.CodeStrayFile, strayXX, ""},
	} {
		if !has(rep, want.code, want.path, want.image) {
			t.Errorf("not reported: %s %s (image %q)", want.code, want.path, want.image)
		}
	}
	// The deleted object is in some layer's stream: reported there.
	found := false
	for _, p := range rep.Problems {
		found = found || (p.Code == fsck.CodeDanglingStreamRef && strings.Contains(p.Detail, strings.TrimPrefix(deleted, repoPath+"/objects/")))
	}
	if !found {
		t.Error("the deleted object is not reported as a dangling stream ref")
	}

	rep = f.objects(true)
	if rep.OK {
		t.Error("the truncated stream cannot be restored, yet repair passed")
	}
	for _, p := range rep.Problems {
		// Only the truncated stream is held by no other store.
		wantRepaired := p.Path != truncated && p.Code != fsck.CodeStreamInvalid
		if p.Repaired != wantRepaired {
			t.Errorf("%s %s: repaired %v", p.Code, p.Path, p.Repaired)
		}
	}
	if _, err := os.Lstat(truncated); !os.IsNotExist(err) {
		t.Errorf("the corrupt stream object was kept (%v); a re-pull would trust it", err)
	}
	if !strings.Contains(strings.Join(rep.Next, "\n"), "re-pull") {
		t.Errorf("no re-pull advice: %v", rep.Next)
	}
	for _, p := range []string{strayTop, strayXX} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the repair", p)
		}
	}
	if got, err := os.ReadFile(flipped); err != nil || bytes.Equal(got, b) {
		t.Errorf("flipped object not restored (%v)", err)
	}

	// What repair could not restore, a re-pull brings back.
	gen := testhost.Generate(t, 5, "1.0")
	testhost.Pull(t, repoPath, f.fs.Dir, gen, "")
	if rep := f.objects(false); !rep.OK {
		t.Errorf("after repair and re-pull: %+v", rep.Problems)
	}

	// containers-storage: a diff file of a pinned layer removed.
	s, err := cstorage.Open(cstorage.DefaultGraphRoot(f.root), f.runRoot)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := s.FindImage(strings.TrimPrefix(oci.Digest(f.images[0].Config()), "sha256:"))
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	diff := filepath.Join(cstorage.DefaultGraphRoot(f.root), "overlay", ci.Layers[0].ID, "diff")
	var victim string
	filepath.Walk(diff, func(p string, fi os.FileInfo, err error) error {
		if err == nil && victim == "" && fi.Mode().IsRegular() && fi.Size() > 0 {
			victim = p
		}
		return nil
	})
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	if rep := f.objects(false); rep.OK || !has(rep, fsck.CodeLayerMismatch, diff, tag) {
		t.Errorf("a removed diff file went unseen: %+v", rep.Problems)
	}
}

// TestObjectsOstree: ostree fsck runs and speaks through our report.
func TestObjectsOstree(t *testing.T) {
	f := newFixture(t, 1)
	im := f.images[0]
	im.Synthesized = true
	f.host = sysroottest.Ostree(t, f.root, []sysroottest.Deployment{{Image: im}}, 0)
	rep := f.objects(false)
	if !rep.OK || !rep.OstreeChecked {
		t.Fatalf("clean ostree host: %+v", rep)
	}
	// Damage a commit object.
	commit := f.host.Ids[0]
	p := filepath.Join(f.root, "ostree", "repo", "objects", commit[:2], commit[2:]+".commit")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ostree", "fsck", "--repo="+filepath.Join(f.root, "ostree", "repo")).CombinedOutput(); err == nil {
		t.Fatalf("the oracle does not see the damage either:\n%s", out)
	}
	rep = f.objects(false)
	if rep.OK || !has(rep, fsck.CodeOstreeFsck, filepath.Join(f.root, "ostree", "repo"), "") {
		t.Errorf("ostree damage not reported: %+v", rep.Problems)
	}
}

// TestObjectsRepairFromOstree: on an ostree host whose repository holds
// the image's files (cloned from composefs, as cfs-clone --to ostree
// does), a corrupt and a missing composefs object are restored from the
// ostree file objects; the next check is clean.
func TestObjectsRepairFromOstree(t *testing.T) {
	f := newFixture(t, 1)
	im := f.images[0]
	im.Synthesized = true
	f.host = sysroottest.Ostree(t, f.root, []sysroottest.Deployment{{Image: im}}, 0)
	repoPath := filepath.Join(f.root, "composefs")
	repo, err := composefs.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	rec, tree, err := pull.FromRepository(repo, im.ManifestDigest())
	if err != nil {
		t.Fatal(err)
	}
	var list bytes.Buffer
	err = pull.WriteList(&list, rec, tree, repo)
	repo.Close()
	if err != nil {
		t.Fatal(err)
	}
	orepo, err := ostree.Open(filepath.Join(f.root, "ostree", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = clone.ToOstree(context.Background(), orepo, &list, io.Discard, clone.Options{})
	orepo.Close()
	if err != nil {
		t.Fatal(err)
	}

	objs := bigObjects(t, repoPath, im.ManifestDigest(), 2)
	b, err := os.ReadFile(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), b...)
	b[0] ^= 1
	os.Chmod(objs[0], 0o644)
	if err := os.WriteFile(objs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(objs[1]); err != nil {
		t.Fatal(err)
	}
	rep := f.objects(true)
	if !rep.OK {
		t.Errorf("repair from ostree left problems: %+v", rep.Problems)
	}
	if got, err := os.ReadFile(objs[0]); err != nil || !bytes.Equal(got, want) {
		t.Errorf("corrupt object not restored (%v)", err)
	}
	if _, err := os.Stat(objs[1]); err != nil {
		t.Errorf("missing object not restored: %v", err)
	}
	if rep := f.objects(false); !rep.OK {
		t.Errorf("after repair: %+v", rep.Problems)
	}
}

// TestObjectsRecordDamage: the ostree checksums cfs-pull keeps with its
// objects are checked in the read that checks the objects; a record that
// does not match the bytes is damage (a clone would name the bytes by
// it), and --repair drops it, after which a clone reads the bytes again.
// The CRC-64 kept beside them (which an export writes into tar-split
// unread) likewise.
func TestObjectsRecordDamage(t *testing.T) {
	f := newFixture(t, 1)
	f.host = sysroottest.Composefs(t, f.root, []sysroottest.Deployment{{Image: f.images[0]}}, 0, sysroottest.BLS, false)
	repoPath := filepath.Join(f.root, "composefs")
	objs := bigObjects(t, repoPath, f.images[0].ManifestDigest(), 3)
	var records [][]composefs.Record
	var all []composefs.ObjectRecords
	for _, p := range objs {
		o, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		or, err := composefs.ReadObjectRecords(o)
		o.Close()
		if err != nil || len(or.Content) == 0 || !or.HasCRC64 {
			t.Fatalf("%s: the pull kept no content record or no CRC (%+v, %v)", p, or, err)
		}
		records = append(records, or.Content)
		all = append(all, or)
	}
	if rep := f.objects(false); !rep.OK {
		t.Fatalf("the records the pull kept do not check out: %+v", rep.Problems)
	}
	bad := records[0]
	bad[0].Sum[7] ^= 1
	if err := unix.Setxattr(objs[0], composefs.RecordXattr, composefs.EncodeRecords(bad), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(objs[1], composefs.RecordXattr, []byte{9, 9}, 0); err != nil {
		t.Fatal(err)
	}
	badCRC := all[2]
	badCRC.CRC64 ^= 1 << 40
	if err := unix.Setxattr(objs[2], composefs.RecordXattr, composefs.EncodeObjectRecords(badCRC), 0); err != nil {
		t.Fatal(err)
	}
	rep := f.objects(false)
	for _, p := range objs {
		if rep.OK || !has(rep, fsck.CodeObjectRecordMismatch, p, "") {
			t.Errorf("the damaged record of %s is not reported", p)
		}
	}
	rep = f.objects(true)
	for _, p := range rep.Problems {
		if p.Code == fsck.CodeObjectRecordMismatch && !p.Repaired {
			t.Errorf("%s: not repaired", p.Path)
		}
	}
	if rep := f.objects(false); !rep.OK {
		t.Fatalf("after the repair: %+v", rep.Problems)
	}
	for _, p := range objs {
		if _, err := unix.Getxattr(p, composefs.RecordXattr, nil); err != unix.ENODATA {
			t.Errorf("%s: the damaged record was kept (%v)", p, err)
		}
	}
}
