package erofs_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

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

		b, err := erofs.NewBuilder(erofs.V1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := b.Root(erofs.NewDir("", 0o755))
		if err != nil {
			t.Fatal(err)
		}
		d, err := b.Add(r, erofs.NewDir("d", 0o700))
		if err != nil {
			t.Fatal(err)
		}
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
