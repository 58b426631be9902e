package erofs_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// newBuilderWithDir starts a V1 builder with a 0755 root holding one
// 0700 directory called name, as the trees the tests compare with.
func newBuilderWithDir(t *testing.T, name string) (b *erofs.Builder, root, dir *erofs.Entry) {
	t.Helper()
	b, err := erofs.NewBuilder(erofs.V1)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = b.Root(erofs.NewDir("", 0o755)); err != nil {
		t.Fatal(err)
	}
	if dir, err = b.Add(root, erofs.NewDir(name, 0o700)); err != nil {
		t.Fatal(err)
	}
	return b, root, dir
}

// TestBuilderSetDigest: files added without a digest and given one later
// make the image of the tree whose nodes had the digests from the start.
func TestBuilderSetDigest(t *testing.T) {
	for _, size := range []int{32, 64} {
		digest := func(s string) []byte {
			if size == 32 {
				d := sha256.Sum256([]byte(s))
				return d[:]
			}
			d := sha512.Sum512([]byte(s))
			return d[:]
		}
		// Two files with the same content share their overlay xattrs in
		// the image; a user xattr sorts before and after them.
		files := []struct {
			name, content string
			xattrs        []erofs.Xattr
		}{
			{"a", "one", nil},
			{"b", "two", []erofs.Xattr{{Name: "user.x", Value: []byte("1")}}},
			{"c", "one", []erofs.Xattr{{Name: "trusted.overlay.x", Value: []byte("2")}}},
		}
		root := erofs.NewDir("", 0o755)
		sub := erofs.NewDir("d", 0o700)
		if err := root.AddChild(sub); err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			n := &erofs.Node{Name: f.name, Mode: erofs.TypeRegular | 0o644, UID: uint32(i), Xattrs: f.xattrs}
			n.SetExternal(digest(f.content), 5000+uint64(i))
			if err := sub.AddChild(n); err != nil {
				t.Fatal(err)
			}
		}
		var want bytes.Buffer
		if err := erofs.Write(&want, root, erofs.V1); err != nil {
			t.Fatal(err)
		}

		b, _, d := newBuilderWithDir(t, "d")
		var entries []*erofs.Entry
		for i, f := range files {
			e, err := b.Add(d, &erofs.Node{Name: f.name, Mode: erofs.TypeRegular | 0o644, UID: uint32(i), Size: 5000 + uint64(i), Xattrs: f.xattrs})
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, e)
		}
		for i, f := range files {
			if err := entries[i].SetDigest(digest(f.content)); err != nil {
				t.Fatal(err)
			}
		}
		if err := entries[0].SetDigest(digest("again")); err == nil {
			t.Error("a second SetDigest was accepted")
		}
		if err := d.SetDigest(digest("dir")); err == nil {
			t.Error("SetDigest on a directory was accepted")
		}
		var got bytes.Buffer
		if err := b.Write(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%d-byte digests: the image with digests set after Add differs from Write's (%d vs %d bytes)", size, got.Len(), want.Len())
		}
	}
}

// TestBuilderAddExternal: a file added with AddExternal makes the image
// of a node given the digest by SetExternalShared, whatever else the
// node has: user xattrs (escaped or not), a given link count with more
// names, no size, a digest that is not one (no payload, or an error).
func TestBuilderAddExternal(t *testing.T) {
	s256 := sha256.Sum256([]byte("a"))
	s512 := sha512.Sum512([]byte("b"))
	type file struct {
		name   string
		size   uint64
		digest []byte
		xattrs []erofs.Xattr
		nlink  uint32
		links  []string
	}
	files := []file{
		{name: "a", size: 10, digest: s256[:]},
		{name: "b", size: 5000, digest: s512[:], links: []string{"b2", "b3"}},
		{name: "c", size: 5000, digest: s512[:], xattrs: []erofs.Xattr{{Name: "user.x", Value: []byte("1")}}},
		{name: "d", size: 7, digest: s256[:], xattrs: []erofs.Xattr{{Name: "trusted.overlay.redirect", Value: []byte("/x")}}},
		{name: "e", size: 1 << 40, digest: s512[:], nlink: 5, links: []string{"e2"}},
		{name: "f", size: 0, digest: s512[:]},
		{name: "g", size: 99, digest: []byte{}},
	}
	root := erofs.NewDir("", 0o755)
	sub := erofs.NewDir("sub", 0o700)
	if err := root.AddChild(sub); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		n := &erofs.Node{Name: f.name, Mode: erofs.TypeRegular | 0o640, UID: uint32(i), Xattrs: f.xattrs, Nlink: f.nlink}
		n.SetExternalShared(f.digest, f.size)
		if err := sub.AddChild(n); err != nil {
			t.Fatal(err)
		}
		for _, l := range f.links {
			if err := root.AddChild(&erofs.Node{Name: l, LinkTo: n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want bytes.Buffer
	if err := erofs.Write(&want, root, erofs.V1); err != nil {
		t.Fatal(err)
	}

	b, r, d := newBuilderWithDir(t, "sub")
	for i, f := range files {
		// The mode's type and the content are what SetExternalShared
		// replaces.
		n := &erofs.Node{Name: f.name, Mode: erofs.TypeSymlink | 0o640, UID: uint32(i), Xattrs: f.xattrs, Nlink: f.nlink, Size: f.size, Content: []byte("x")}
		e, err := b.AddExternal(d, n, f.digest)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range f.links {
			if err := b.Link(r, l, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got bytes.Buffer
	if err := b.Write(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("the image made with AddExternal differs from Write's (%d vs %d bytes)", got.Len(), want.Len())
	}

	b, _, d = newBuilderWithDir(t, "sub")
	d2, _ := b.Add(d, erofs.NewDir("deeper", 0o700))
	if _, err := b.AddExternal(d2, &erofs.Node{Name: "f", Size: 5}, []byte{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "/sub/deeper/f") {
		t.Errorf("a 3-byte digest: %v", err)
	}
	if _, err := b.AddExternal(d2, &erofs.Node{Name: "a/b", Size: 5}, s256[:]); err == nil || !strings.Contains(err.Error(), "/sub/deeper/a/b") {
		t.Errorf("a name with a slash: %v", err)
	}
	if err := b.Link(d2, "l", d); err == nil || !strings.Contains(err.Error(), "/sub/deeper/l: hardlink to a directory") {
		t.Errorf("a hardlink to a directory: %v", err)
	}
}
