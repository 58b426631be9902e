package erofs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A crash can leave an object under its name with none of its bytes; the
// next mkfs --objects must replace it rather than keep it.
func TestStoreObjectReplacesDamaged(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	body := bytes.Repeat([]byte("composefs object "), 300)
	if err := os.WriteFile(src, body, 0o644); err != nil {
		t.Fatal(err)
	}
	digest := bytes.Repeat([]byte{0xab}, 32)
	objects := filepath.Join(dir, "objects")
	dst := filepath.Join(objects, ObjectPath(digest))

	if err := StoreObject(objects, src, digest); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dst, 0); err != nil {
		t.Fatal(err)
	}
	if err := StoreObject(objects, src, digest); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("object after re-store: %d bytes, %v; want the %d bytes of its source", len(got), err, len(body))
	}
	// An intact object is kept as it is.
	before, _ := os.Stat(dst)
	if err := StoreObject(objects, src, digest); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(dst); !os.SameFile(before, after) {
		t.Error("an intact object was rewritten")
	}
}

// TestSetExternalPayload: the payload SetExternal makes is the object
// path, also when the node is copied or its payload replaced later, and
// an empty digest gives none.
func TestSetExternalPayload(t *testing.T) {
	d := make([]byte, 32)
	for i := range d {
		d[i] = byte(i * 7)
	}
	n := &Node{Name: "f"}
	n.SetExternal(d, 5000)
	if n.Payload != ObjectPath(d) || string(n.redirectValue()) != "/"+ObjectPath(d) {
		t.Fatalf("payload %q, redirect %q", n.Payload, n.redirectValue())
	}
	c := *n
	c.Payload = "ab/other"
	if got := string(c.redirectValue()); got != "/ab/other" {
		t.Fatalf("redirect after the payload changed: %q", got)
	}
	n.SetExternal(nil, 5000)
	if n.Payload != "" {
		t.Fatalf("payload of an empty digest: %q", n.Payload)
	}
}

// TestAppendObjectPath: the object path the writer makes in place is
// ObjectPath's, for every digest length and after what the buffer holds.
func TestAppendObjectPath(t *testing.T) {
	d := make([]byte, 70)
	for i := range d {
		d[i] = byte(i*37 + 11)
	}
	for l := 0; l <= len(d); l++ {
		got := appendObjectPath([]byte("/"), d[:l])
		if want := "/" + ObjectPath(d[:l]); string(got) != want {
			t.Fatalf("%d bytes: %q, want %q", l, got, want)
		}
	}
}
