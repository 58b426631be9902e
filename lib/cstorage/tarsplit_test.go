package cstorage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
)

// tarSplitOf packs a tar of the given member names (each with a body of
// its own) as c/storage records a layer: tar-split's JSON packer.
func tarSplitOf(t testing.TB, names []string) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for i, name := range names {
		body := strings.Repeat(string(rune('a'+i%26)), i*37%5000)
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(name, "/") {
			hdr = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
			body = ""
		}
		if len(name) > 100 {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var ts bytes.Buffer
	rc, done, err := asm.NewInputTarStreamWithDone(&tarBuf, tsstorage.NewJSONPacker(&ts), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	// The packer may still be writing ts when the copy has read the end.
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return ts.Bytes()
}

// decodeBoth reads data with tar-split's unpacker and ours, side by side,
// and fails at the first entry or error where they differ. It returns
// how many entries were read and how many lines ours left to
// encoding/json.
func decodeBoth(t testing.TB, data []byte) (entries, general int) {
	t.Helper()
	want := tsstorage.NewJSONUnpacker(bytes.NewReader(data))
	got := newTarSplitReader(bytes.NewReader(data))
	for i := 0; ; i++ {
		we, werr := want.Next()
		ge, gerr := got.Next()
		if (werr == nil) != (gerr == nil) || werr != nil && (errors.Is(werr, io.EOF) != errors.Is(gerr, io.EOF) || errors.Is(werr, tsstorage.ErrDuplicatePath) != errors.Is(gerr, tsstorage.ErrDuplicatePath)) {
			t.Fatalf("entry %d: tar-split: %v, %v; ours: %v, %v", i, we, werr, ge, gerr)
		}
		if werr != nil {
			return i, got.general
		}
		if !reflect.DeepEqual(we, ge) {
			t.Fatalf("entry %d: tar-split %+v, ours %+v", i, *we, *ge)
		}
	}
}

// TestTarSplitReader: our tar-split decoder gives the entries tar-split's
// JSON unpacker gives, for names that need no escape (decoded without
// encoding/json: a decoder that always fell back would be correct but
// fail here), for names JSON escapes or tar-split keeps raw (not UTF-8),
// for PAX headers longer than the read buffer, and it refuses a duplicate
// path as tar-split does.
func TestTarSplitReader(t *testing.T) {
	plain := []string{"./", "./usr/", "./usr/bin/sh", "usr/lib/ld.so", "./usr/share/é/ünïcode", "./usr/x\x7fdel"}
	n, general := decodeBoth(t, tarSplitOf(t, plain))
	if n < 2*len(plain) || general != 0 {
		t.Fatalf("plain names: %d entries, %d through encoding/json; want >= %d and none", n, general, 2*len(plain))
	}

	long := "./usr/" + strings.Repeat("long-directory-name/", 4000) + "file"
	n, general = decodeBoth(t, tarSplitOf(t, append(plain, long)))
	if general != 0 || n < 2*len(plain) {
		t.Fatalf("a %d-byte name: %d entries, %d through encoding/json", len(long), n, general)
	}

	for _, odd := range []string{"./usr/a<b>&c", "./usr/quote\"d", "./usr/back\\slash", "./usr/tab\there", "./usr/dir-\xc3\x28", "./usr/\u2028sep"} {
		names := append(append([]string(nil), plain...), odd, "./usr/after")
		if n, _ := decodeBoth(t, tarSplitOf(t, names)); n < 2*len(names) {
			t.Fatalf("%q: only %d entries", odd, n)
		}
	}

	// Lines of another shape than the packer's still decode as tar-split
	// decodes them: keys in another order, spaces, escapes in base64.
	other := `{"position":0,"type":2,"payload":"YWJj"}` + "\n" +
		`{ "type": 1, "name": "./a", "size": 3, "payload": "AAAAAAAAAAA=", "position": 1 }` + "\n" +
		`{"type":2,"payload":"YW\/j","position":2}` + "\n"
	decodeBoth(t, []byte(other))

	dup := []byte(`{"type":1,"name":"./a","size":1,"payload":"AAAAAAAAAAA=","position":0}` + "\n" +
		`{"type":1,"name":"a","size":1,"payload":"AAAAAAAAAAA=","position":1}` + "\n")
	got := newTarSplitReader(bytes.NewReader(dup))
	if _, err := got.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := got.Next(); !errors.Is(err, tsstorage.ErrDuplicatePath) {
		t.Fatalf("a duplicate path: %v, want %v", err, tsstorage.ErrDuplicatePath)
	}
}

// FuzzTarSplitReader: on any input, our decoder and tar-split's give the
// same entries and fail at the same entry.
func FuzzTarSplitReader(f *testing.F) {
	f.Add(tarSplitOf(f, []string{"./", "./usr/", "./usr/bin/sh", "./usr/a<b>", "./usr/dir-\xc3\x28"}))
	f.Add([]byte(`{"type":1,"name":"./a","size":-0,"payload":"","position":01}` + "\n" + `{"type":2,"payload":null,"position":1}`))
	f.Add([]byte(`{"type":1,"name":"./a","name_raw":"YQ==","size":99999999999999999999,"payload":"AA==","position":1}`))
	f.Add([]byte("{\"type\":2,\"payload\":\"YWJj\",\"position\":2}\n\n  \n{\"type\":2,\"payload\":\"YW\\njE=\",\"position\":3}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBoth(t, data)
	})
}

// BenchmarkTarSplitReader decodes the tar-split of 3,000 files with
// tar-split's unpacker and with ours.
func BenchmarkTarSplitReader(b *testing.B) {
	var names []string
	for i := range 3000 {
		names = append(names, "./usr/share/doc/package-"+strings.Repeat("x", i%40)+"/file"+string(rune('a'+i%26))+strings.Repeat("y", i%7))
	}
	data := tarSplitOf(b, names)
	for _, c := range []struct {
		name string
		new  func(io.Reader) tsstorage.Unpacker
	}{
		{"tar-split", tsstorage.NewJSONUnpacker},
		{"ours", func(r io.Reader) tsstorage.Unpacker { return newTarSplitReader(r) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				u := c.new(bytes.NewReader(data))
				for {
					if _, err := u.Next(); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
		})
	}
}
