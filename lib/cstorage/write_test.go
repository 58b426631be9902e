package cstorage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/reflink"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// member is a tar member of a test layer; a body over 64 bytes becomes a
// file chunk (cloned), a shorter one stays inline (written).
type member struct {
	name, link string
	typ        byte
	body       string
	// Optional: mode (0: 0644, 0755 for directories), owner, time and
	// PAX records (xattrs).
	mode     int64
	uid, gid int
	mtime    time.Time
	pax      map[string]string
}

// testChunks is a layer tar as chunks, each large body a file of dir.
type testChunks struct {
	chunks []Chunk
	paths  []string // file chunks, opened as they are handed out
}

func (c *testChunks) Next() (Chunk, error) {
	if len(c.chunks) == 0 {
		return Chunk{}, io.EOF
	}
	ch := c.chunks[0]
	c.chunks = c.chunks[1:]
	if ch.Size > 0 {
		f, err := os.Open(c.paths[0])
		if err != nil {
			return Chunk{}, err
		}
		c.paths = c.paths[1:]
		ch.File = f
	}
	return ch, nil
}

// layerOf builds members into a tar and returns its diff ID and a
// function giving it as chunks.
func layerOf(t *testing.T, dir string, members []member) (string, func() *testChunks) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	type piece struct {
		inline []byte
		path   string
		size   int64
	}
	var pieces []piece
	prev := 0
	for i, m := range members {
		hdr := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: m.typ, Mode: 0o644, Format: tar.FormatPAX,
			Uid: m.uid, Gid: m.gid, ModTime: m.mtime, PAXRecords: m.pax}
		if m.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if m.mode != 0 {
			hdr.Mode = m.mode
		}
		if m.typ == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if m.typ != tar.TypeReg || len(m.body) <= 64 {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		start := buf.Len() // WriteHeader wrote the header (and padding before it)
		if _, err := tw.Write([]byte(m.body)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("body-%d", i))
		if err := os.WriteFile(path, []byte(m.body), 0o644); err != nil {
			t.Fatal(err)
		}
		pieces = append(pieces, piece{inline: bytes.Clone(buf.Bytes()[prev:start])}, piece{path: path, size: int64(len(m.body))})
		prev = start + len(m.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	pieces = append(pieces, piece{inline: bytes.Clone(buf.Bytes()[prev:])})
	sum := sha256.Sum256(buf.Bytes())
	return "sha256:" + hex.EncodeToString(sum[:]), func() *testChunks {
		c := &testChunks{}
		for _, p := range pieces {
			if p.path != "" {
				c.chunks = append(c.chunks, Chunk{Size: p.size})
				c.paths = append(c.paths, p.path)
			} else if len(p.inline) > 0 {
				c.chunks = append(c.chunks, Chunk{Inline: p.inline})
			}
		}
		return c
	}
}

func storeDiffDigest(t *testing.T, s *Store, id string) (string, error) {
	t.Helper()
	rc, err := s.Diff(id)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func big(c byte) string { return strings.Repeat(string(c), 10000) }

// TestWriteLayersVerified: a layer written through the Differ gives back
// its diff ID through Store.Diff, the real c/storage reassembly, and its
// large bodies share their extents; a layer that would not (a member
// whose name leads to another file than the one its body was read from)
// is refused by WriteLayers' own check, which reads no cloned body again,
// and Store.Diff confirms it would have read back wrong.
func TestWriteLayersVerified(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	src := fs.Path("src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fs.Path("store"), fs.Path("run"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	write := func(members []member, policy reflink.Policy) (*NewImage, *WriteStats, error) {
		diffID, chunks := layerOf(t, src, members)
		n := &NewImage{DiffIDs: []string{diffID}, Policy: policy,
			Layer: func(int) (ChunkReader, error) { return chunks(), nil }}
		_, st, err := s.WriteLayers(n)
		return n, st, err
	}

	good := []member{
		{name: "usr/", typ: tar.TypeDir},
		{name: "usr/big", typ: tar.TypeReg, body: big('a')},
		{name: "usr/small", typ: tar.TypeReg, body: "small"},
		{name: "usr/link", typ: tar.TypeLink, link: "usr/big"},
		{name: "usr/sym", typ: tar.TypeSymlink, link: "big"},
		{name: "usr/other", typ: tar.TypeReg, body: big('b')},
	}
	n, st, err := write(good, reflink.Always)
	if err != nil {
		t.Fatal(err)
	}
	if st.LayersWritten != 1 || st.Cloned != 2 {
		t.Fatalf("layers written %d, cloned %d; want 1 and 2", st.LayersWritten, st.Cloned)
	}
	id := n.LayerIDs()[0]
	if got, err := storeDiffDigest(t, s, id); err != nil || got != n.DiffIDs[0] {
		t.Fatalf("Store.Diff of the written layer: %s, %v; want %s", got, err, n.DiffIDs[0])
	}
	bf, err := os.Open(filepath.Join(s.GraphRoot(), "overlay", id, "diff", "usr", "big"))
	if err != nil {
		t.Fatal(err)
	}
	shared, total, err := reflink.SharedBytes(bf)
	bf.Close()
	if err != nil || shared != total || total == 0 {
		t.Fatalf("usr/big shares %d of %d bytes (%v), want all", shared, total, err)
	}

	// e/f written, then replaced through a symlink d -> e by d/f: the
	// store would give d/f's body for e/f too.
	for _, policy := range []reflink.Policy{reflink.Always, reflink.Auto} {
		dup := []member{
			{name: "e/", typ: tar.TypeDir},
			{name: "e/f", typ: tar.TypeReg, body: big('c')},
			{name: "d", typ: tar.TypeSymlink, link: "e"},
			{name: "d/f", typ: tar.TypeReg, body: big('d')},
		}
		if policy == reflink.Auto {
			dup[1].body, dup[3].body = "short c", "short d"
		}
		n, st, err := write(dup, policy)
		if err == nil || !strings.Contains(err.Error(), `member "e/f"`) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: a layer whose first body is not what its name gives back: %v", policy, err)
		}
		if len(st.Written) != 1 {
			t.Fatalf("%s: written %v, want the refused layer (for the caller to remove)", policy, st.Written)
		}
		id := n.LayerIDs()[0]
		if got, err := storeDiffDigest(t, s, id); err == nil && got == n.DiffIDs[0] {
			t.Fatalf("%s: Store.Diff gives the diff ID back, yet WriteLayers refused the layer", policy)
		}
		if err := s.Storage().DeleteLayer(id); err != nil {
			t.Fatal(err)
		}
	}

	// The store handing back another tar-split than the one written.
	var d cloneDiffer
	diffID, chunks := layerOf(t, src, []member{{name: "g", typ: tar.TypeReg, body: big('e')}})
	d.chunks, d.diffID, d.policy = chunks(), diffID, reflink.Always
	out, err := s.stageLayer(&d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.s.ApplyStagedLayer(storage.ApplyStagedLayerOptions{ID: LayerID("", diffID), DiffOutput: out, DiffOptions: &drivers.ApplyDiffWithDifferOpts{}}); err != nil {
		t.Fatal(err)
	}
	d.tarSplitID[0] ^= 1
	if err := s.verifyLayer(LayerID("", diffID), &d); err == nil || !strings.Contains(err.Error(), "another tar-split") {
		t.Fatalf("a tar-split other than the one written: %v", err)
	}
	d.tarSplitID[0] ^= 1
	if err := s.verifyLayer(LayerID("", diffID), &d); err != nil {
		t.Fatal(err)
	}
	// A body file edited after it was hashed: a body read from its file
	// is known by its inode, so only a written one is read back.
	d.bodies[0].read = false
	path := filepath.Join(s.GraphRoot(), "overlay", LayerID("", diffID), "diff", "g")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := s.verifyLayer(LayerID("", diffID), &d); err == nil || !strings.Contains(err.Error(), "CRC64") {
		t.Fatalf("a written body edited afterwards: %v", err)
	}
}

// treeOf lists a directory's entries: type, size and link target.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fmt.Sprintf("%v %d", fi.Mode().Type(), fi.Size())
		if fi.IsDir() {
			desc = "dir"
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDifferLayoutMatchesPutLayer: the Differ resolves members through
// directories it remembers; a directory later replaced by a symlink must
// not be remembered. The layout equals what c/storage's own extraction
// (PutLayer) makes of the same tar, and nothing lands outside the layer.
func TestDifferLayoutMatchesPutLayer(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	src := fs.Path("src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fs.Path("store"), fs.Path("run"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The tar replaces directory a, through another name for it (tar-split
	// refuses a name twice), by a symlink to a directory outside, then
	// writes below a/b again: that must land inside the layer.
	outside := fs.Path("outside")
	if err := os.MkdirAll(filepath.Join(outside, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	members := []member{
		{name: "a/", typ: tar.TypeDir},
		{name: "a/b/", typ: tar.TypeDir},
		{name: "a/b/x", typ: tar.TypeReg, body: big('x')},
		{name: "a/b/y", typ: tar.TypeReg, body: "y"},
		{name: "l", typ: tar.TypeSymlink, link: "."},
		{name: "l/a", typ: tar.TypeSymlink, link: outside},
		{name: "a/b/z", typ: tar.TypeReg, body: big('z')},
		{name: "c/d/e", typ: tar.TypeReg, body: "implied parents"},
		{name: "c/d", typ: tar.TypeSymlink, link: "../a"},
		{name: "c/d/w", typ: tar.TypeReg, body: big('w')},
	}
	diffID, chunks := layerOf(t, src, members)
	// Staged only: the layer cannot give its tar back (a/b/x is no longer
	// reachable by its name), which WriteLayers would refuse.
	d := &cloneDiffer{chunks: chunks(), diffID: diffID, policy: reflink.Auto}
	out, err := s.stageLayer(d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.s.CleanupStagedLayer(out)
	if _, err := os.Lstat(filepath.Join(outside, "b", "z")); !os.IsNotExist(err) {
		t.Fatalf("the Differ wrote outside the layer (%v)", err)
	}
	// The same tar through c/storage's own extraction, as a second layer
	// of another ID.
	var buf bytes.Buffer
	c := chunks()
	for {
		ch, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ch.File != nil {
			io.Copy(&buf, ch.File)
			ch.File.Close()
		} else {
			buf.Write(ch.Inline)
		}
	}
	ref, _, err := s.Storage().PutLayer("", "", nil, "", false, nil, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "b", "z")); !os.IsNotExist(err) {
		t.Fatalf("PutLayer wrote outside the layer (%v)", err)
	}
	ours := treeOf(t, out.Target)
	theirs := treeOf(t, filepath.Join(s.GraphRoot(), "overlay", ref.ID, "diff"))
	if fmt.Sprint(ours) != fmt.Sprint(theirs) {
		t.Fatalf("the Differ laid out\n%v\nc/storage's PutLayer\n%v", ours, theirs)
	}
}

// TestDifferClonedMetadataMatchesPutLayer: bodies cloned ahead get their
// owner, mode (setuid included), times (nanoseconds, and a time before the
// epoch, which c/storage clamps) and xattrs through their descriptor, and
// replace what has their name; they come out as c/storage's own
// extraction (PutLayer) makes them, hardlinks included.
func TestDifferClonedMetadataMatchesPutLayer(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	src := fs.Path("src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fs.Path("store"), fs.Path("run"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	when := time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)
	members := []member{
		{name: "usr/", typ: tar.TypeDir, mtime: when},
		{name: "usr/bin/", typ: tar.TypeDir, mtime: when},
		{name: "usr/bin/su", typ: tar.TypeReg, body: big('s'), mode: 0o4755, mtime: when},
		{name: "usr/bin/owned", typ: tar.TypeReg, body: big('o'), mode: 0o640, uid: 12, gid: 34, mtime: when.Add(time.Second)},
		{name: "usr/bin/old", typ: tar.TypeReg, body: big('p'), mtime: time.Unix(-100, 0)},
		{name: "usr/bin/attr", typ: tar.TypeReg, body: big('a'), mtime: when, pax: map[string]string{"SCHILY.xattr.user.cfs": "v", "SCHILY.xattr.security.selinux": "x"}},
		{name: "usr/bin/hard", typ: tar.TypeLink, link: "usr/bin/owned", mtime: when},
		{name: "usr/bin/small", typ: tar.TypeReg, body: "small", mode: 0o600, uid: 5, mtime: when},
		// Names taken already, reached through a symlink: a directory and
		// a file, each replaced by a cloned body.
		{name: "usr/lib/", typ: tar.TypeDir, mtime: when},
		{name: "usr/lib/x", typ: tar.TypeReg, body: big('x'), mtime: when},
		{name: "usr/bin/lib", typ: tar.TypeSymlink, link: "..", mtime: when},
		{name: "usr/bin/lib/lib", typ: tar.TypeReg, body: big('l'), mtime: when},
		{name: "usr/bin/lib/bin/attr", typ: tar.TypeReg, body: big('b'), mode: 0o600, mtime: when},
	}
	diffID, chunks := layerOf(t, src, members)
	d := &cloneDiffer{chunks: chunks(), diffID: diffID, policy: reflink.Always, ahead: true}
	out, err := s.stageLayer(d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.s.CleanupStagedLayer(out)
	if d.stats.Cloned != 7 {
		t.Fatalf("cloned %d bodies, want 7", d.stats.Cloned)
	}
	var buf bytes.Buffer
	c := chunks()
	for {
		ch, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ch.File != nil {
			io.Copy(&buf, ch.File)
			ch.File.Close()
		} else {
			buf.Write(ch.Inline)
		}
	}
	ref, _, err := s.Storage().PutLayer("", "", nil, "", false, nil, &buf)
	if err != nil {
		t.Fatal(err)
	}
	describe := func(root string) map[string]string {
		out := map[string]string{}
		err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			st := fi.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%v %d uid=%d gid=%d nlink=%d", fi.Mode(), fi.Size(), st.Uid, st.Gid, st.Nlink)
			if !fi.IsDir() {
				desc += fmt.Sprintf(" mtime=%d", fi.ModTime().UnixNano())
			}
			if fi.Mode().IsRegular() {
				data, _ := os.ReadFile(p)
				desc += fmt.Sprintf(" sha=%x", sha256.Sum256(data))
			}
			if v, err := unix.Lgetxattr(p, "user.cfs", make([]byte, 16)); err == nil {
				desc += fmt.Sprintf(" xattr=%d", v)
			}
			out[rel] = desc
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ours := describe(out.Target)
	theirs := describe(filepath.Join(s.GraphRoot(), "overlay", ref.ID, "diff"))
	if fmt.Sprint(ours) != fmt.Sprint(theirs) {
		t.Fatalf("the Differ laid out\n%v\nc/storage's PutLayer\n%v", ours, theirs)
	}
}
