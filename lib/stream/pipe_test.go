package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// step is what a consumer sees at one call of Next.
type step struct {
	entry  *Entry
	closed []string
	line   int
	eof    bool
}

func trace(t *testing.T, r EntryReader) (*Image, []step) {
	t.Helper()
	img, err := r.Image()
	if err != nil {
		t.Fatal(err)
	}
	var steps []step
	for {
		e, err := r.Next()
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		s := step{entry: e, closed: append([]string(nil), r.Closed()...), line: r.Line(), eof: err == io.EOF}
		if s.eof {
			s.line = 0 // a Reader counts the end record's line, a pipe has none
		}
		steps = append(steps, s)
		if s.eof {
			return img, steps
		}
	}
}

// A PipeReader gives its consumer what a Reader of the encoded stream
// gives: the same image, entries, closed directories and line numbers.
func TestPipeMatchesReader(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.ndjson")
	if len(files) == 0 {
		t.Fatal("no vectors")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wantImg, want := trace(t, NewReader(bytes.NewReader(data)))
			img, entries, err := ReadAll(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			pr, pw := Pipe()
			go func() {
				err := func() error {
					if err := pw.WriteImage(img); err != nil {
						return err
					}
					for _, e := range entries {
						if err := pw.WriteEntry(e); err != nil {
							return err
						}
					}
					return pw.Close()
				}()
				pw.CloseWithError(err)
			}()
			gotImg, got := trace(t, pr)
			if !reflect.DeepEqual(gotImg, wantImg) {
				t.Errorf("image %+v, want %+v", gotImg, wantImg)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("pipe gave\n%+v\nreader gave\n%+v", got, want)
			}
		})
	}
}

// The pipe's writer refuses what a Writer refuses, with the same error.
func TestPipeWriterRefusesLikeWriter(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []*Entry
	}{
		{"root not first", []*Entry{{Type: TypeDir, Path: "/a", Mode: 0o755}}},
		{"duplicate", []*Entry{{Type: TypeDir, Path: "/", Mode: 0o755}, {Type: TypeDir, Path: "/a"}, {Type: TypeDir, Path: "/a"}}},
		{"unsorted", []*Entry{{Type: TypeDir, Path: "/", Mode: 0o755}, {Type: TypeDir, Path: "/b"}, {Type: TypeDir, Path: "/a"}}},
		{"hardlink to a symlink", []*Entry{{Type: TypeDir, Path: "/"}, {Type: TypeSymlink, Path: "/a", Target: "x"}, {Type: TypeHardlink, Path: "/b", LinkTo: "/a"}}},
		{"file naming no object", []*Entry{{Type: TypeDir, Path: "/"}, {Type: TypeFile, Path: "/a", Size: 100}}},
		{"type bits in mode", []*Entry{{Type: TypeDir, Path: "/", Mode: 0o40755}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := NewWriter(io.Discard)
			pr, pw := Pipe()
			go func() { // a consumer, so the writer never waits
				for {
					if _, err := pr.Next(); err != nil {
						return
					}
				}
			}()
			var werr, perr error
			if werr = w.WriteImage(testImage()); werr != nil {
				t.Fatal(werr)
			}
			if perr = pw.WriteImage(testImage()); perr != nil {
				t.Fatal(perr)
			}
			for _, e := range c.entries {
				if werr == nil {
					werr = w.WriteEntry(e)
				}
				if perr == nil {
					c := *e
					perr = pw.WriteEntry(&c)
				}
			}
			pw.CloseWithError(perr)
			if werr == nil || perr == nil || werr.Error() != perr.Error() {
				t.Errorf("pipe: %v; writer: %v", perr, werr)
			}
			if pw.Close() == nil {
				t.Error("Close after a refused entry succeeded")
			}
		})
	}
}

// A writer that stops without Close leaves the reader a truncated stream;
// its error reaches the reader, after what it handed over before.
func TestPipeWriterStops(t *testing.T) {
	boom := errors.New("boom")
	for _, c := range []struct {
		name string
		err  error
		want error
	}{{"no error", nil, ErrTruncated}, {"error", boom, boom}} {
		t.Run(c.name, func(t *testing.T) {
			pr, pw := Pipe()
			if err := pw.WriteImage(testImage()); err != nil {
				t.Fatal(err)
			}
			entries := testEntries()
			for _, e := range entries[:3] {
				if err := pw.WriteEntry(e); err != nil {
					t.Fatal(err)
				}
			}
			pw.CloseWithError(c.err)
			for i := 0; i < 3; i++ {
				if e, err := pr.Next(); err != nil || e != entries[i] {
					t.Fatalf("entry %d: %v, %v", i, e, err)
				}
			}
			_, err := pr.Next()
			if !errors.Is(err, c.want) {
				t.Fatalf("Next = %v, want %v", err, c.want)
			}
			if _, err2 := pr.Next(); err2 != err {
				t.Errorf("the error is not final: %v then %v", err, err2)
			}
		})
	}
	t.Run("before the image", func(t *testing.T) {
		pr, pw := Pipe()
		pw.CloseWithError(nil)
		if _, err := pr.Image(); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "no image record") {
			t.Errorf("Image = %v", err)
		}
	})
}

// A reader that stops unblocks a writer waiting on it, whose every later
// call fails with the reader's error.
func TestPipeReaderStops(t *testing.T) {
	boom := errors.New("consumer failed")
	pr, pw := Pipe()
	done := make(chan error)
	go func() {
		err := pw.WriteImage(testImage())
		if err == nil {
			err = pw.WriteEntry(&Entry{Type: TypeDir, Path: "/", Mode: 0o755})
		}
		for i := 0; err == nil && i < 100_000; i++ { // far more than the pipe holds
			err = pw.WriteEntry(&Entry{Type: TypeFile, Path: fmt.Sprintf("/f%06d", i), Mode: 0o644, Size: 1, Inline: []byte("x")})
		}
		done <- err
	}()
	if _, err := pr.Next(); err != nil {
		t.Fatal(err)
	}
	pr.CloseWithError(boom)
	err := <-done
	if !errors.Is(err, boom) {
		t.Fatalf("writer: %v, want %v", err, boom)
	}
	if err := pw.Close(); !errors.Is(err, boom) {
		t.Errorf("Close = %v", err)
	}
}

// Both writers refuse the same misuse of the record order, each with the
// same error; before they shared their rules, a Writer wrote an entry
// after its end record.
func TestWritersRefuseMisuse(t *testing.T) {
	root := func() *Entry { return &Entry{Type: TypeDir, Path: "/", Mode: 0o755} }
	for _, c := range []struct {
		name string
		use  func(EntryWriter) error
		want string
	}{
		{"entry before the image", func(w EntryWriter) error { return w.WriteEntry(root()) }, "entry written before the image record"},
		{"image twice", func(w EntryWriter) error {
			if err := w.WriteImage(testImage()); err != nil {
				return nil
			}
			return w.WriteImage(testImage())
		}, "image record written twice"},
		{"no entries", func(w EntryWriter) error {
			if err := w.WriteImage(testImage()); err != nil {
				return nil
			}
			return w.Close()
		}, "closing a stream that has no entries"},
		{"entry after the end", func(w EntryWriter) error {
			if w.WriteImage(testImage()) != nil || w.WriteEntry(root()) != nil || w.Close() != nil {
				return nil
			}
			return w.WriteEntry(&Entry{Type: TypeDir, Path: "/a", Mode: 0o755})
		}, "entry written after the end"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pr, pw := Pipe()
			go func() {
				for {
					if _, err := pr.Next(); err != nil {
						return
					}
				}
			}()
			defer pw.CloseWithError(nil)
			for name, w := range map[string]EntryWriter{"Writer": NewWriter(io.Discard), "PipeWriter": pw} {
				err := c.use(w)
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: %v, want %q", name, err, c.want)
				}
			}
		})
	}
}
