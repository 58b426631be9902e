package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The conformance vectors in testdata/ are the object list's contract in a
// form other implementations can test against: every valid/*.ndjson must
// be accepted, every invalid/*.ndjson refused with exactly the error in
// invalid/*.err. They are generated from the definitions below
// (go test ./lib/stream -run TestConformanceVectors -update) and checked in;
// the test fails if the files and the definitions drift apart.

var update = flag.Bool("update", false, "rewrite lib/stream/testdata from the vector definitions")

// vecImage is the image record every vector starts with.
func vecImage() string {
	rec := testImage()
	rec.Version = Version
	line, err := json.Marshal(struct {
		Type Type `json:"type"`
		*Image
	}{TypeImage, rec})
	if err != nil {
		panic(err)
	}
	return string(line)
}

// sealLines joins lines (the image record first) and appends the end
// record of exactly those bytes, without checking them.
func sealLines(lines ...string) string {
	body := strings.Join(lines, "\n") + "\n"
	sum := sha256.Sum256([]byte(body))
	return body + fmt.Sprintf(`{"type":"end","entries":%d,"bytes":%d,"sha256":"%x"}`+"\n", len(lines)-1, len(body), sum)
}

const (
	vRoot  = `{"type":"dir","path":"/","mode":493,"uid":0,"gid":0,"mtime":0}`
	vDirA  = `{"type":"dir","path":"/a","mode":493,"uid":0,"gid":0,"mtime":0}`
	vFileB = `{"type":"file","path":"/a/b","mode":420,"uid":0,"gid":0,"mtime":0,"size":3,"inline":"Yi4K"}`
	vAdash = `{"type":"file","path":"/a-b","mode":420,"uid":0,"gid":0,"mtime":0}`
)

type vector struct {
	name    string
	content string
	err     string // "" for a valid vector
}

func vectors() []vector {
	img := vecImage()
	every := func() string {
		var b bytes.Buffer
		w := NewWriter(&b)
		w.WriteImage(testImage())
		for _, e := range testEntries() {
			if err := w.WriteEntry(e); err != nil {
				panic(err)
			}
		}
		if err := w.Close(); err != nil {
			panic(err)
		}
		return b.String()
	}()
	everyLines := strings.Split(strings.TrimSuffix(every, "\n"), "\n")
	unsealed := strings.Join(everyLines[:len(everyLines)-1], "\n") + "\n"
	return []vector{
		// Valid.
		{name: "minimal", content: sealLines(img, vRoot)},
		{name: "every-type", content: every},
		{name: "preorder-not-path-sort", content: sealLines(img, vRoot, vDirA, vFileB, vAdash)},
		{name: "written-by-hand", content: sealLines(img,
			// Spaces between tokens, escapes, an unknown field (readers
			// ignore fields they do not know), a surrogate pair, a
			// non-ASCII name, fields in any order, zero fields omitted.
			`{ "type": "dir", "path": "/", "mode": 493, "futureField": {"x": [1, 2]} }`,
			`{"mode":420,"path":"\/caf\u00e9","type":"file","size":2,"inline":"aGk="}`,
			`{"type":"blockdev","path":"/sda","mode":432,"rdev":2048}`,
			`{"type":"symlink","path":"/smile","target":"\ud83d\ude00","mode":511}`,
			`{"type":"chardev","path":"/zero","mode":438,"rdev":261}`)},

		// Invalid: what a reader refuses, with the error it must give.
		{name: "empty", content: "", err: "object list: empty stream, no image record: stream ends without an end record (did the producing command fail?)"},
		{name: "no-end-record", content: unsealed, err: fmt.Sprintf("object list: after line %d: stream ends without an end record (did the producing command fail?)", len(everyLines)-1)},
		{name: "last-line-unterminated", content: strings.TrimSuffix(every, "\n"), err: fmt.Sprintf("object list line %d: last line has no newline: stream ends without an end record (did the producing command fail?)", len(everyLines))},
		{name: "end-wrong-count", content: strings.Replace(every, fmt.Sprintf(`"entries":%d`, len(everyLines)-2), `"entries":1`, 1),
			err: fmt.Sprintf("object list line %d: end record counts 1 entries, the stream has %d", len(everyLines), len(everyLines)-2)},
		{name: "data-after-end", content: sealLines(img, vRoot) + "\n", err: "object list line 4: data after the end record"},
		{name: "version-2", content: sealLines(strings.Replace(img, `"version":1`, `"version":2`, 1), vRoot), err: "object list line 1: object list version 2 is not supported (this tool reads version 1)"},
		{name: "entry-first", content: sealLines(vRoot), err: `object list line 1: the first record must be of type "image", got "dir"`},
		{name: "root-not-first", content: sealLines(img, vDirA), err: `object list line 2: the first entry must be the root directory "/", got dir "/a"`},
		{name: "path-sort-order", content: sealLines(img, vRoot, vDirA, vAdash, vFileB),
			err: "object list line 5: /a/b: parent /a is not an open directory (entries must be in pre-order, each after its parent directory)"},
		{name: "siblings-unsorted", content: sealLines(img, vRoot, `{"type":"dir","path":"/b","mode":493}`, vDirA),
			err: `object list line 4: /a: out of order: siblings must be sorted bytewise, and "b" came before it`},
		{name: "duplicate-path", content: sealLines(img, vRoot, vDirA, vDirA), err: "object list line 4: /a: duplicate entry"},
		{name: "relative-path", content: sealLines(img, vRoot, `{"type":"dir","path":"a","mode":493}`), err: `object list line 3: path "a" is not absolute`},
		{name: "dotdot-path", content: sealLines(img, vRoot, `{"type":"dir","path":"/..","mode":493}`), err: `object list line 3: path "/.." is not clean (contains "..")`},
		{name: "key-case", content: sealLines(img, vRoot, `{"type":"dir","PATH":"/a","mode":493}`), err: `object list line 3: key "PATH" is not "path" (keys are case-sensitive)`},
		{name: "duplicate-key", content: sealLines(img, vRoot, `{"type":"file","path":"/a","mode":420,"size":1,"size":1,"inline":"eA=="}`), err: `object list line 3: duplicate key "size" (keys are unique)`},
		{name: "invalid-utf8", content: sealLines(img, vRoot, "{\"type\":\"dir\",\"path\":\"/caf\xe9\",\"mode\":493}"),
			err: "object list line 3: invalid UTF-8 at byte 27 (JSON text is UTF-8; a name that is not travels base64-encoded in its *Base64 field)"},
		{name: "unpaired-surrogate", content: sealLines(img, vRoot, `{"type":"dir","path":"/\udc80","mode":493}`),
			err: `object list line 3: a string in "path" holds the escape \udc80, an unpaired surrogate that names no character`},
		{name: "base64-of-utf8", content: sealLines(img, vRoot, `{"type":"dir","pathBase64":"L2E=","mode":493}`),
			err: "object list line 3: not a valid record: pathBase64 holds valid UTF-8; it must travel as path"},
		{name: "mode-with-type-bits", content: sealLines(img, vRoot, `{"type":"file","path":"/a","mode":33188}`),
			err: `object list line 3: /a: mode 0100644 has bits outside 07777 (the type belongs in "type")`},
		{name: "hardlink-to-symlink", content: sealLines(img, vRoot, `{"type":"symlink","path":"/a","mode":511,"target":"x"}`, `{"type":"hardlink","path":"/b","linkTo":"/a"}`),
			err: "object list line 4: /b: hardlink target /a is not an earlier regular file"},
		{name: "inline-over-limit", content: sealLines(img, vRoot, `{"type":"file","path":"/a","mode":420,"size":65,"inline":"`+strings.Repeat("QUFB", 21)+`QQ=="}`),
			err: "object list line 3: /a: a 65-byte file is larger than the 64-byte inline limit but carries inline bytes"},
		{name: "file-without-object", content: sealLines(img, vRoot, `{"type":"file","path":"/a","mode":420,"size":100}`),
			err: "object list line 3: /a: a 100-byte file names no object (composefs, ostree or src)"},
		{name: "unknown-type", content: sealLines(img, vRoot, `{"type":"door","path":"/a","mode":420}`), err: `object list line 3: unknown record type "door"`},
	}
}

func TestConformanceVectors(t *testing.T) {
	all := vectors()
	if *update {
		for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, v := range all {
			dir := "testdata/valid"
			if v.err != "" {
				dir = "testdata/invalid"
				if err := os.WriteFile(filepath.Join(dir, v.name+".err"), []byte(v.err+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, v.name+".ndjson"), []byte(v.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The files must be what the definitions say.
	want := map[string]string{}
	for _, v := range all {
		if v.err == "" {
			want["valid/"+v.name+".ndjson"] = v.content
		} else {
			want["invalid/"+v.name+".ndjson"] = v.content
			want["invalid/"+v.name+".err"] = v.err + "\n"
		}
	}
	files, _ := filepath.Glob("testdata/*/*")
	var have []string
	for _, f := range files {
		have = append(have, strings.TrimPrefix(f, "testdata/"))
	}
	sort.Strings(have)
	if len(have) != len(want) {
		t.Errorf("testdata holds %d files, the definitions %d (run go test ./lib/stream -run TestConformanceVectors -update)", len(have), len(want))
	}
	for _, name := range have {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[name]; !ok || w != string(data) {
			t.Errorf("testdata/%s differs from its definition (run go test ./lib/stream -run TestConformanceVectors -update)", name)
		}
	}

	// What the files say must hold.
	valid, _ := filepath.Glob("testdata/valid/*.ndjson")
	invalid, _ := filepath.Glob("testdata/invalid/*.ndjson")
	if len(valid) < 4 || len(invalid) < 20 {
		t.Fatalf("%d valid and %d invalid vectors", len(valid), len(invalid))
	}
	for _, f := range valid {
		data, _ := os.ReadFile(f)
		if _, _, err := ReadAll(bytes.NewReader(data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, f := range invalid {
		data, _ := os.ReadFile(f)
		wantErr, err := os.ReadFile(strings.TrimSuffix(f, ".ndjson") + ".err")
		if err != nil {
			t.Errorf("%s has no .err file: %v", f, err)
			continue
		}
		_, _, err = ReadAll(bytes.NewReader(data))
		if err == nil || err.Error() != strings.TrimSuffix(string(wantErr), "\n") {
			t.Errorf("%s:\n got %v\nwant %s", f, err, wantErr)
		}
	}
}
