package erofs_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// TestOverlayXattrsMadeOnDemand: the metacopy and redirect values the
// writer makes from an external file's digest when it needs them are the
// ones the kernel and the reader see, also where several files share an
// object (the pair goes to the shared table) and where a payload is not
// the object's own path (kept as given).
func TestOverlayXattrsMadeOnDemand(t *testing.T) {
	for _, digest := range [][]byte{func() []byte { d := sha256.Sum256([]byte("a")); return d[:] }(),
		func() []byte { d := sha512.Sum512([]byte("a")); return d[:] }()} {
		root := erofs.NewDir("", 0o755)
		for _, name := range []string{"one", "two", "three"} {
			n := &erofs.Node{Name: name, Mode: erofs.TypeRegular | 0o644}
			n.SetExternal(digest, 5000)
			if err := root.AddChild(n); err != nil {
				t.Fatal(err)
			}
		}
		other := &erofs.Node{Name: "other", Mode: erofs.TypeRegular | 0o644, Size: 5000, Digest: digest, Payload: "elsewhere/x",
			Xattrs: []erofs.Xattr{{Name: "trusted.overlay.opaque", Value: []byte("y")}, {Name: "user.a", Value: []byte("b")}}}
		if err := root.AddChild(other); err != nil {
			t.Fatal(err)
		}
		img := buildImage(t, root, erofs.V1)
		im := readImage(t, img)
		for _, name := range []string{"one", "two", "three", "other"} {
			n := im.Root.Lookup(name)
			if n == nil {
				t.Fatalf("%s is missing", name)
			}
			want := erofs.ObjectPath(digest)
			if name == "other" {
				want = "elsewhere/x"
			}
			if !bytes.Equal(n.Digest, digest) || n.Payload != want || n.Size != 5000 {
				t.Errorf("%s: digest %x payload %q size %d", name, n.Digest, n.Payload, n.Size)
			}
		}
		// The same image from a tree read back, whose nodes carry the
		// values the reader found.
		if again := buildImage(t, im.Root, erofs.V1); !bytes.Equal(again, img) {
			t.Error("the image of the tree read back differs")
		}
	}
}
