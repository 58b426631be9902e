package oci

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/splitstream"
)

type tm struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	xattrs     map[string]string
}

// capNetRaw is a revision 2 security.capability granting cap_net_raw
// permitted and effective, as setcap writes it.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func tarOf(t testing.TB, members ...tm) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: m.typ, Mode: m.mode, Size: int64(len(m.body)),
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range m.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, m.body)
	}
	w.Close()
	return buf.Bytes()
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func newRepo(t *testing.T) *composefs.Repository {
	t.Helper()
	r, err := composefs.Create(filepath.Join(t.TempDir(), "repo"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func importTar(t *testing.T, repo *composefs.Repository, data []byte) (string, error) {
	d := digestOf(data)
	_, err := ImportLayer(repo, bytes.NewReader(data), d, nil)
	return d, err
}

// TestLayerReassemblesByteExact stores tars with every kind of member,
// long names, PAX records and trailing padding, and checks the
// splitstream gives back the same bytes.
func TestLayerReassemblesByteExact(t *testing.T) {
	repo := newRepo(t)
	rng := rand.New(rand.NewSource(3))
	big := make([]byte, 3<<20+17)
	rng.Read(big)
	members := []tm{
		{name: "usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/bin/empty"},
		{name: "usr/bin/small", body: strings.Repeat("x", 64)},
		{name: "usr/bin/over", body: strings.Repeat("y", 65)},
		{name: "usr/bin/block", body: strings.Repeat("z", 512)},
		{name: "usr/bin/big", body: string(big), mode: 0o4755, xattrs: map[string]string{"security.capability": capNetRaw}},
		{name: "usr/bin/link", link: "usr/bin/big", typ: tar.TypeLink},
		{name: "usr/bin/sym", link: "../lib/x", typ: tar.TypeSymlink},
		{name: "usr/" + strings.Repeat("long", 40), body: "long name"},
		{name: "usr/fifo", typ: tar.TypeFifo},
	}
	data := tarOf(t, members...)
	data = append(data, make([]byte, 10240)...) // record padding past the end blocks
	diffID, err := importTar(t, repo, data)
	if err != nil {
		t.Fatal(err)
	}
	sr, _, err := repo.OpenStream(composefs.LayerContentID(diffID), splitstream.ContentOCILayer)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := sr.Reassemble(&out, func(id []byte) (io.ReadCloser, error) { return repo.OpenObject(id) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("reassembled %d bytes differ from the %d-byte tar", out.Len(), len(data))
	}
	if len(sr.ObjectRefs) != 3 { // over, block, big
		t.Errorf("%d objects, want the 3 bodies over 64 bytes", len(sr.ObjectRefs))
	}

	var got []*Member
	if err := ReadLayer(repo, diffID, func(m *Member) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(members) {
		t.Fatalf("ReadLayer gave %d members, want %d", len(got), len(members))
	}
	bigID, _ := fsverity.Digest(bytes.NewReader(big), fsverity.SHA512)
	if !bytes.Equal(got[6].Object, bigID) || got[3].Inline == nil || string(got[3].Inline) != strings.Repeat("x", 64) {
		t.Errorf("bodies not mapped back to their members")
	}
	if got[6].Stat.Mode != 0o4755 || string(got[6].Stat.Xattrs["security.capability"]) != capNetRaw {
		t.Errorf("metadata of %s: %+v", got[6].Path, got[6].Stat)
	}
	if got[7].Hardlink != "/usr/bin/big" || got[8].Target != "../lib/x" {
		t.Errorf("links: %q %q", got[7].Hardlink, got[8].Target)
	}
}

func TestImportRejects(t *testing.T) {
	cases := map[string]struct {
		members []tm
		want    string
	}{
		"dotdot":          {[]tm{{name: "usr/../../etc/passwd", body: "x"}}, `escapes the image`},
		"absolute":        {[]tm{{name: "/etc/passwd", body: "x"}}, "is absolute"},
		"duplicate":       {[]tm{{name: "a", body: "1"}, {name: "./a", body: "2"}}, "appears twice"},
		"hardlink escape": {[]tm{{name: "a", link: "../../etc/shadow", typ: tar.TypeLink}}, "escapes the image"},
		"root not dir":    {[]tm{{name: ".", body: ""}}, "not a directory"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			repo := newRepo(t)
			data := tarOf(t, c.members...)
			diffID, err := importTar(t, repo, data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			if ok, _ := HaveLayer(repo, diffID); ok {
				t.Error("a refused layer was named")
			}
		})
	}
}

func TestImportChecksDiffID(t *testing.T) {
	repo := newRepo(t)
	data := tarOf(t, tm{name: "a", body: strings.Repeat("a", 100)})
	wrong := digestOf([]byte("other"))
	if _, err := ImportLayer(repo, bytes.NewReader(data), wrong, nil); err == nil || !strings.Contains(err.Error(), "corrupt or truncated") {
		t.Fatalf("wrong diff ID: %v", err)
	}
	if _, err := importTar(t, repo, data[:len(data)-700]); err == nil {
		t.Fatal("a truncated tar was accepted")
	}
	if ok, _ := HaveLayer(repo, wrong); ok {
		t.Error("a layer with the wrong diff ID was named")
	}
}

func buildTree(t *testing.T, layers ...[]tm) (*fstree.Dir, error) {
	repo := newRepo(t)
	var ids []string
	for _, l := range layers {
		d, err := importTar(t, repo, tarOf(t, l...))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d)
	}
	mg := NewMerger()
	for _, d := range ids {
		if err := ReadLayer(repo, d, mg.Apply); err != nil {
			return nil, err
		}
	}
	return mg.Root, nil
}

func paths(root *fstree.Dir) []string {
	var out []string
	root.Walk(func(p string, in fstree.Inode, first string) error {
		if first != "" {
			p += "=" + first
		}
		if _, ok := in.(*fstree.Dir); ok {
			p += "/"
		}
		out = append(out, p)
		return nil
	})
	return out
}

func TestMergeWhiteoutsAndReplacement(t *testing.T) {
	root, err := buildTree(t,
		[]tm{
			{name: "usr/", typ: tar.TypeDir}, {name: "usr/a", body: "a"}, {name: "usr/b", body: "b"},
			{name: "etc/", typ: tar.TypeDir}, {name: "etc/x", body: "x"}, {name: "etc/sub/", typ: tar.TypeDir}, {name: "etc/sub/y", body: "y"},
			{name: "opt", body: "file"},
			{name: "var/", typ: tar.TypeDir}, {name: "var/keep", body: "k"},
		},
		[]tm{
			{name: "usr/.wh.a"},
			{name: "usr/hl", link: "usr/b", typ: tar.TypeLink}, // into the earlier layer
			{name: "etc/", typ: tar.TypeDir, mode: 0o700},
			{name: "etc/.wh..wh..opq"}, {name: "etc/new", body: "n"},
			{name: "opt/", typ: tar.TypeDir}, {name: "opt/inside", body: "i"},
			{name: "var/", typ: tar.TypeDir, mode: 0o1777}, // dir over dir keeps children
		},
		[]tm{{name: "opt", body: "file again"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(paths(root), " ")
	want := "/etc/ /etc/new /opt /usr/ /usr/b /usr/hl=/usr/b /var/ /var/keep"
	if got != want {
		t.Errorf("merged tree:\n got %s\nwant %s", got, want)
	}
	etc, _ := root.Lookup("/etc")
	if etc.(*fstree.Dir).Mode != 0o700 {
		t.Errorf("/etc mode %o", etc.(*fstree.Dir).Mode)
	}
	v, _ := root.Lookup("/var")
	if v.(*fstree.Dir).Mode != 0o1777 {
		t.Errorf("/var mode %o", v.(*fstree.Dir).Mode)
	}
}

func TestMergeRejects(t *testing.T) {
	cases := map[string]struct {
		layers [][]tm
		want   string
	}{
		"through symlink":  {[][]tm{{{name: "lib", link: "usr/lib", typ: tar.TypeSymlink}, {name: "lib/x", body: "x"}}}, "may not go through a symlink"},
		"hardlink missing": {[][]tm{{{name: "a", link: "nothere", typ: tar.TypeLink}}}, "no such file"},
		"hardlink to dir":  {[][]tm{{{name: "d/", typ: tar.TypeDir}, {name: "a", link: "d", typ: tar.TypeLink}}}, "is a directory"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := buildTree(t, c.layers...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestImpliedParents(t *testing.T) {
	root, err := buildTree(t, []tm{{name: "usr/lib/deep/file", body: "f"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(paths(root), " "); got != "/usr/ /usr/lib/ /usr/lib/deep/ /usr/lib/deep/file" {
		t.Errorf("tree %s", got)
	}
}

func TestTransformForOCI(t *testing.T) {
	root, err := buildTree(t, []tm{
		{name: "usr/", typ: tar.TypeDir, mode: 0o711, xattrs: map[string]string{"security.selinux": "usr_t", "security.capability": capNetRaw}},
		{name: "usr/f", body: "x", xattrs: map[string]string{"user.keep": "u", "security.selinux": "s", "security.capability": capNetRaw}},
		{name: "run/", typ: tar.TypeDir}, {name: "run/junk", body: "j"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := TransformForOCI(root, AllowlistOnly); err != nil {
		t.Fatal(err)
	}
	if root.Mode != 0o711 || string(root.Xattrs["security.capability"]) != capNetRaw || root.Xattrs["security.selinux"] != nil {
		t.Errorf("root %+v", root.Stat)
	}
	f, _ := root.Lookup("/usr/f")
	if x := f.(*fstree.Leaf).Xattrs; len(x) != 1 || string(x["security.capability"]) != capNetRaw {
		t.Errorf("file xattrs %v", x)
	}
	run, _ := root.Lookup("/run")
	if run.(*fstree.Dir).Len() != 0 {
		t.Error("/run not emptied")
	}
	empty := fstree.NewDir(fstree.Stat{})
	if err := TransformForOCI(empty, AllowlistOnly); err == nil {
		t.Error("an image without /usr was accepted")
	}
}
