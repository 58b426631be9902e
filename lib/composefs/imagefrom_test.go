package composefs

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/lib/fsverity"
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

// TestWriteImageFromLarge: an image of several of the pipe's buffers,
// written in pieces that straddle them, is stored whole under its
// digest; a producer that fails after some buffers went to the file
// leaves no image and no temporary file behind.
func TestWriteImageFromLarge(t *testing.T) {
	r := newRepo(t)
	image := make([]byte, 5*imagePipeBufSize+12345)
	rand.New(rand.NewSource(1)).Read(image)
	pieces := func(limit int, err error) func(io.Writer) error {
		return func(w io.Writer) error {
			for p, i := image[:limit], 0; len(p) > 0; i++ {
				k := min(len(p), 1+i*7919%300000)
				if _, err := w.Write(p[:k]); err != nil {
					return err
				}
				p = p[k:]
			}
			return err
		}
	}
	want, err := fsverity.Digest(bytes.NewReader(image), r.Algorithm())
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.WriteImageFrom(pieces(len(image), nil))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("id %x, the bytes' digest is %x", got, want)
	}
	if b, err := os.ReadFile(r.ObjectPath(got)); err != nil || !bytes.Equal(b, image) {
		t.Fatalf("the stored image differs from the bytes written (%v)", err)
	}

	r2 := newRepo(t)
	if _, err := r2.WriteImageFrom(pieces(3*imagePipeBufSize+5, io.ErrUnexpectedEOF)); err != io.ErrUnexpectedEOF {
		t.Fatalf("a producer failing midway: %v", err)
	}
	if err := r2.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"images", "objects"} {
		entries, err := os.ReadDir(filepath.Join(r2.Path(), dir))
		if err != nil || len(entries) != 0 {
			t.Fatalf("%s after a failed image: %v (%v)", dir, entries, err)
		}
	}
}

// TestImagePipeWriteError: when the file cannot be written, the producer
// gets the error (from a Write or from Close) and nothing waits forever.
func TestImagePipeWriteError(t *testing.T) {
	f, err := os.Open(os.DevNull) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := newImagePipe(f, io.Discard)
	var werr error
	chunk := make([]byte, 100000)
	for i := 0; i < 200 && werr == nil; i++ {
		_, werr = p.Write(chunk)
	}
	cerr := p.Close()
	if cerr == nil {
		t.Fatal("Close reported no error after the file refused the writes")
	}
	if werr == nil {
		t.Fatal("20 MB were accepted by a pipe whose file refuses writes")
	}
}
