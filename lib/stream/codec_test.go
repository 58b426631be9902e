package stream

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// The wire form as encoding/json writes it through the struct tags: what
// encodeEntry must reproduce byte for byte.

func splitBytes(s string, keep bool) (*string, []byte) {
	if !keep {
		return nil, nil
	}
	if utf8.ValidString(s) {
		return &s, nil
	}
	return nil, []byte(s)
}

// hardlinkJSON is the whole wire form of a hardlink: its metadata is its
// target's, so repeating it could only let the two disagree.
type hardlinkJSON struct {
	Type         Type    `json:"type"`
	Path         *string `json:"path,omitempty"`
	PathBase64   []byte  `json:"pathBase64,omitempty"`
	LinkTo       *string `json:"linkTo,omitempty"`
	LinkToBase64 []byte  `json:"linkToBase64,omitempty"`
}

func marshalEntryJSON(e *Entry) ([]byte, error) {
	if e.Type == TypeHardlink {
		h := hardlinkJSON{Type: e.Type}
		h.Path, h.PathBase64 = splitBytes(e.Path, true)
		h.LinkTo, h.LinkToBase64 = splitBytes(e.LinkTo, true)
		return json.Marshal(h)
	}
	w := entryJSON{Type: e.Type, entryFields: entryFields(*e)}
	w.Path, w.PathBase64 = splitBytes(e.Path, true)
	w.Target, w.TargetBase64 = splitBytes(e.Target, e.Type == TypeSymlink)
	w.LinkTo, w.LinkToBase64 = splitBytes(e.LinkTo, e.Type == TypeHardlink)
	w.Src, w.SrcBase64 = splitBytes(e.Src, e.Src != "")
	if e.Type != TypeFile {
		w.Size = 0
	}
	return json.Marshal(w)
}

// codecEntries are testEntries and entries with every kind of string and
// value the encoder treats specially.
func codecEntries() []*Entry {
	es := testEntries()
	for _, s := range []string{"", "a<b>&c", "quote\"back\\slash", "tab\tnl\n\x01\x7f", "é ü \u2028 \u2029", "bad\xffutf8", "/usr/share/a b"} {
		es = append(es,
			&Entry{Type: TypeFile, Path: "/x/" + s, Mode: 0o644, Size: 3, Inline: []byte{}, Src: s, Composefs: s, Ostree: s,
				Xattrs: map[string][]byte{s: []byte(s), "user.b": nil, "user.a": {}, "security.capability": {1, 2, 3}}},
			&Entry{Type: TypeSymlink, Path: s, Target: s, Mode: 0o777, Mtime: -5, MtimeNsec: 999999999, Xattrs: map[string][]byte{}},
			&Entry{Type: TypeHardlink, Path: "/h" + s, LinkTo: s, Mode: 0o644, Size: 9},
			&Entry{Type: Type(s), Path: "/t", Size: -1, Rdev: 1 << 63, UID: 1<<32 - 1, GID: 7, Mtime: -1 << 63},
		)
	}
	return es
}

func TestEncodeEntryMatchesJSON(t *testing.T) {
	for _, e := range codecEntries() {
		want, err := marshalEntryJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeEntry(nil, e); !bytes.Equal(got, want) {
			t.Errorf("encodeEntry:\n got %s\nwant %s", got, want)
		}
		if got, err := json.Marshal(e); err != nil || !bytes.Equal(got, want) {
			t.Errorf("json.Marshal(entry): %v\n got %s\nwant %s", err, got, want)
		}
	}
}

// slowDecode is how a line the fast decoder leaves is read.
func slowDecode(line []byte) (*Entry, error) {
	if err := checkLine(line); err != nil {
		return nil, err
	}
	e := new(Entry)
	if err := unmarshalEntry(line, e); err != nil {
		return nil, err
	}
	return e, nil
}

func TestDecodeEntryAgreesWithJSON(t *testing.T) {
	fast := 0
	for _, e := range codecEntries() {
		line := encodeEntry(nil, e)
		slow, err := slowDecode(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var got Entry
		if decodeEntry(line, &got) {
			fast++
			if !reflect.DeepEqual(&got, slow) {
				t.Errorf("%s:\nfast %#v\nslow %#v", line, got, *slow)
			}
		}
	}
	// What Writer writes for ordinary entries takes the fast path.
	if fast < 12 {
		t.Errorf("only %d lines decoded by decodeEntry", fast)
	}
	for _, line := range []string{
		`{"type":"file","path":"/a","mode":420,"uid":0,"gid":0,"mtime":0,"size":3,"inline":"YWJj"}`,
		`{"type":"file","path":"/a","mode":420,"uid":0,"gid":0,"mtime":-0,"inline":"","xattrs":{}}`,
		`{"path":"/a","type":"dir","mode":420,"gid":0,"mtime":0,"uid":4294967295}`,
	} {
		var got Entry
		if !decodeEntry([]byte(line), &got) {
			t.Errorf("%s: not decoded", line)
			continue
		}
		slow, err := slowDecode([]byte(line))
		if err != nil || !reflect.DeepEqual(&got, slow) {
			t.Errorf("%s: %v\nfast %#v\nslow %#v", line, err, got, slow)
		}
	}
	// Lines the fast path must leave to the slow one (whose errors they
	// get, or whose leniency: unknown keys are ignored).
	for _, line := range []string{
		`{"type":"file","path":"/a","path":"/b","mode":420}`,
		`{"type":"file","Path":"/a","mode":420}`,
		`{"type":"file","path":"/a","mode":420,"extra":1}`,
		`{"type":"file","path":"/a","mode":1e2}`,
		`{"type":"file","path":"/a","mode":01}`,
		`{"type":"file","path":"/a","mode":-1}`,
		`{"type":"file","path":"/a","mode":4294967296}`,
		`{"type":"file","path":"/a","mode":null}`,
		`{"type":"file","path":"/a\u0041","mode":420}`,
		`{"type":"file","path":"/é","mode":420}`,
		`{"type":"file","pathBase64":"/w==","mode":420}`,
		`{"type":"file","path":"/a","xattrs":{"a":"","a":""}}`,
		`{"type":"file","path":"/a","inline":"!!"}`,
		`{"type":"end","path":"/a"}`,
		`{"type":"file"}`,
		`{"type":"file","path":"/a"} `,
		` {"type":"file","path":"/a"}`,
		`{"type":"file","path":"/a",}`,
		`{}`,
	} {
		var got Entry
		if decodeEntry([]byte(line), &got) {
			t.Errorf("%s: decoded by the fast path", line)
		}
	}
}

// FuzzEntryCodec: whatever line the fast decoder accepts, the strict check
// and encoding/json accept too and decode to the same entry; and every
// entry encodes to the bytes encoding/json gives.
func FuzzEntryCodec(f *testing.F) {
	for _, e := range codecEntries() {
		f.Add(encodeEntry(nil, e))
	}
	f.Add([]byte(`{"type":"file","path":"/a","mode":420,"uid":0,"gid":0,"mtime":0,"xattrs":{"user.a":"YQ==","user.b":""}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast Entry
		ok := decodeEntry(line, &fast)
		slow, err := slowDecode(line)
		if ok {
			if err != nil {
				t.Fatalf("%q: decoded by the fast path, refused by the slow one: %v", line, err)
			}
			if !reflect.DeepEqual(&fast, slow) {
				t.Fatalf("%q:\nfast %#v\nslow %#v", line, fast, *slow)
			}
		}
		if err != nil {
			return
		}
		want, err := marshalEntryJSON(slow)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeEntry(nil, slow); !bytes.Equal(got, want) {
			t.Fatalf("%q: encodeEntry\n got %s\nwant %s", line, got, want)
		}
	})
}
