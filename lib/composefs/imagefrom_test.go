package composefs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteImageFrom: a streamed image gets the id and name WriteImage
// gives the same bytes, and an object of the right size but wrong bytes
// under that id is replaced, not trusted.
func TestWriteImageFrom(t *testing.T) {
	r := newRepo(t)
	image := bytes.Repeat([]byte("composefs image "), 20000)
	want, err := r.WriteImage(image)
	if err != nil {
		t.Fatal(err)
	}
	write := func(w io.Writer) error {
		for p := image; len(p) > 0; p = p[min(len(p), 1000):] {
			if _, err := w.Write(p[:min(len(p), 1000)]); err != nil {
				return err
			}
		}
		return nil
	}
	obj := r.ObjectPath(want)
	bad := bytes.Repeat([]byte("x"), len(image))
	if err := os.WriteFile(obj, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := r.WriteImageFrom(write)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("streamed image id %x, WriteImage gave %x", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(r.Path(), "images", ObjectName(want)[:2]+ObjectName(want)[3:])); err != nil || !bytes.Equal(b, image) {
		t.Fatalf("images/<id> does not hold the image after the corrupt object was found (%v)", err)
	}
	if _, err := r.WriteImageFrom(func(io.Writer) error { return io.ErrShortWrite }); err != io.ErrShortWrite {
		t.Fatalf("a failing writer: %v", err)
	}
}
