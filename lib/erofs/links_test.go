package erofs_test

import (
	"bytes"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// TestNormalizeLinks: a tree whose hardlink comes before its target (as a
// tar may have it) gives, once normalised, the image of the tree with the
// first name canonical.
func TestNormalizeLinks(t *testing.T) {
	build := func(targetFirst bool) *erofs.Node {
		root := erofs.NewDir("", 0o755)
		a, z := erofs.NewDir("a", 0o755), erofs.NewDir("z", 0o755)
		root.AddChild(a)
		root.AddChild(z)
		z.AddChild(&erofs.Node{Name: "e", Mode: erofs.TypeFifo | 0o644})
		file := &erofs.Node{Mode: erofs.TypeRegular | 0o644, Size: 3, Content: []byte("abc"), MtimeSec: 7}
		file.SetXattr("user.x", []byte("y"))
		if targetFirst {
			file.Name = "f"
			a.AddChild(file)
			z.AddChild(&erofs.Node{Name: "g", LinkTo: file})
		} else {
			file.Name = "g"
			z.AddChild(file)
			a.AddChild(&erofs.Node{Name: "f", LinkTo: file})
			z.AddChild(&erofs.Node{Name: "h", LinkTo: a.Lookup("f")})
		}
		return root
	}
	want := build(true)
	want.Lookup("z").AddChild(&erofs.Node{Name: "h", LinkTo: want.Lookup("a").Lookup("f")})
	got := build(false)
	before := buildImage(t, got, erofs.V1)
	got.NormalizeLinks()
	if f := got.Lookup("a").Lookup("f"); f.LinkTo != nil || string(f.Content) != "abc" {
		t.Fatal("first name is not canonical after NormalizeLinks")
	}
	img := buildImage(t, got, erofs.V1)
	if !bytes.Equal(img, buildImage(t, want, erofs.V1)) {
		t.Fatal("normalised tree does not give the canonical image")
	}
	if bytes.Equal(img, before) {
		t.Fatal("test does not exercise a different layout")
	}
}
