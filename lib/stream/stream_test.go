package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func testImage() *Image {
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`
	config := `{"architecture":"amd64","os":"linux"}`
	digest := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return &Image{
		Source:         "docker://127.0.0.1:5000/os:42",
		ManifestDigest: digest(manifest),
		ConfigDigest:   digest(config),
		Manifest:       manifest,
		Config:         config,
		Layers:         []Layer{{Digest: digest("l1"), DiffID: digest("d1")}},
		Stores:         Stores{Composefs: &ComposefsStore{Repo: "/sysroot/composefs", Tag: "localhost/bootc"}},
	}
}

var verity = strings.Repeat("ab", 64)

func testEntries() []*Entry {
	return []*Entry{
		{Type: TypeDir, Path: "/", Mode: 0o755},
		{Type: TypeSymlink, Path: "/bin", Mode: 0o777, Target: "usr/bin", Ostree: strings.Repeat("1a", 32)},
		{Type: TypeDir, Path: "/etc", Mode: 0o755, Xattrs: map[string][]byte{"security.selinux": []byte("system_u:object_r:etc_t:s0\x00")}},
		{Type: TypeFile, Path: "/etc/hostname", Mode: 0o644, Size: 5, Inline: []byte("host\n"), Mtime: 1700000000, MtimeNsec: 5},
		{Type: TypeFile, Path: "/etc/passwd", Mode: 0o644, Size: 0},
		{Type: TypeDir, Path: "/usr", Mode: 0o755},
		{Type: TypeDir, Path: "/usr/bin", Mode: 0o755},
		{Type: TypeFile, Path: "/usr/bin/bash", Mode: 0o4755, UID: 0, GID: 0, Size: 4097, Composefs: verity, Src: "/sysroot/composefs/objects/ab/cd"},
		{Type: TypeHardlink, Path: "/usr/bin/sh", LinkTo: "/usr/bin/bash"},
		{Type: TypeDir, Path: "/usr/bin/sub", Mode: 0o700, UID: 1000, GID: 1000},
		{Type: TypeFile, Path: "/usr/bin/x", Mode: 0o644, Size: 100, Ostree: strings.Repeat("0f", 32)},
		{Type: TypeDir, Path: "/usr/lib", Mode: 0o555},
		{Type: TypeCharDev, Path: "/usr/lib/null", Mode: 0o666, Rdev: 0x103},
		{Type: TypeFifo, Path: "/usr/lib/pipe", Mode: 0o600},
		{Type: TypeSocket, Path: "/usr/lib/sock", Mode: 0o600},
		{Type: TypeFile, Path: "/usr/lib/s\xffrc", Mode: 0o644, Size: 70, Composefs: verity, Src: "/store/diff/usr/lib/s\xffrc"},
		{Type: TypeSymlink, Path: "/usr/lib/w\xffeird", Mode: 0o777, Target: "/t\xfeo"},
		{Type: TypeDir, Path: "/var", Mode: 0o1777},
	}
}

func writeStream(t testing.TB, img *Image, entries []*Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type readResult struct {
	image   *Image
	entries []*Entry
	closed  [][]string
}

func readStream(data []byte) (*readResult, error) {
	r := NewReader(bytes.NewReader(data))
	img, err := r.Image()
	if err != nil {
		return nil, err
	}
	res := &readResult{image: img}
	for {
		e, err := r.Next()
		res.closed = append(res.closed, append([]string(nil), r.Closed()...))
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		res.entries = append(res.entries, e)
	}
}

func TestRoundTrip(t *testing.T) {
	entries := testEntries()
	data := writeStream(t, testImage(), entries)
	res, err := readStream(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	want := testImage()
	want.Version = Version
	if !reflect.DeepEqual(res.image, want) {
		t.Errorf("image record changed:\n got %+v\nwant %+v", res.image, want)
	}
	if len(res.entries) != len(entries) {
		t.Fatalf("read %d entries, wrote %d", len(res.entries), len(entries))
	}
	for i := range entries {
		if !reflect.DeepEqual(res.entries[i], entries[i]) {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, res.entries[i], entries[i])
		}
	}
	if !bytes.Contains(data, []byte(`"pathBase64":`)) || !bytes.Contains(data, []byte(`"targetBase64":`)) || !bytes.Contains(data, []byte(`"srcBase64":`)) {
		t.Errorf("a non-UTF-8 name did not travel as base64:\n%s", data)
	}
	if bytes.Contains(data, []byte("\ufffd")) {
		t.Errorf("a name was mangled into U+FFFD")
	}
}

func TestClosedDirectories(t *testing.T) {
	res, err := readStream(writeStream(t, testImage(), testEntries()))
	if err != nil {
		t.Fatal(err)
	}
	// closed[i] is what became complete when entry i arrived; the last
	// element is what the end record completed.
	var got []string
	for i, c := range res.closed {
		if len(c) > 0 {
			got = append(got, fmt.Sprintf("%d:%s", i, strings.Join(c, ",")))
		}
	}
	want := []string{
		"5:/etc",           // /usr arrives
		"10:/usr/bin/sub",  // /usr/bin/x arrives
		"11:/usr/bin",      // /usr/lib arrives
		"17:/usr/lib,/usr", // /var arrives
		"18:/var,/",        // end
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("closed directories:\n got %q\nwant %q", got, want)
	}
}

// lines renders entries as raw JSON lines so a test can tamper with them.
func lines(t testing.TB, entries []*Entry) []string {
	data := writeStream(t, testImage(), entries)
	ls := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	return ls[:len(ls)-1] // without the end record
}

// seal appends a correct end record to ls.
func seal(ls []string, entries int) string {
	body := strings.Join(ls, "\n") + "\n"
	sum := sha256.Sum256([]byte(body))
	return body + fmt.Sprintf(`{"type":"end","entries":%d,"bytes":%d,"sha256":"%x"}`+"\n", entries, len(body), sum)
}

func TestReaderRejects(t *testing.T) {
	good := lines(t, testEntries())
	n := len(testEntries())
	replace := func(i int, line string) string {
		ls := append([]string(nil), good...)
		ls[i] = line
		return seal(ls, n)
	}
	swap := func(i, j int) string {
		ls := append([]string(nil), good...)
		ls[i], ls[j] = ls[j], ls[i]
		return seal(ls, n)
	}
	insert := func(i int, line string) string {
		ls := append([]string(nil), good[:i]...)
		ls = append(ls, line)
		ls = append(ls, good[i:]...)
		return seal(ls, n+1)
	}
	sealed := seal(good, n)
	cases := []struct {
		name, stream string
		line         int
		want         string
	}{
		{"empty", "", 0, "no image record"},
		{"version 2", strings.Replace(sealed, `"version":1`, `"version":2`, 1), 1, "version 2 is not supported"},
		{"manifest text altered", strings.Replace(sealed, `"schemaVersion\":2`, `"schemaVersion\":3`, 1), 1, "manifest text has digest"},
		{"entry before image", seal(good[1:], n), 1, `must be of type "image"`},
		{"no root first", seal(append([]string{good[0]}, good[2:]...), n-1), 2, "first entry must be the root"},
		{"siblings unsorted", swap(2, 3), 4, "out of order"},
		{"child before parent", swap(6, 7), 7, "not an open directory"},
		{"duplicate", insert(3, good[3]), 5, "duplicate entry"},
		{"relative path", replace(3, `{"type":"symlink","path":"bin","mode":511,"uid":0,"gid":0,"mtime":0,"target":"x"}`), 4, "not absolute"},
		{"dotdot", replace(3, `{"type":"symlink","path":"/../bin","mode":511,"uid":0,"gid":0,"mtime":0,"target":"x"}`), 4, `contains ".."`},
		{"double slash", replace(3, `{"type":"symlink","path":"//bin","mode":511,"uid":0,"gid":0,"mtime":0,"target":"x"}`), 4, "not clean"},
		{"trailing slash", replace(3, `{"type":"dir","path":"/etc/","mode":493,"uid":0,"gid":0,"mtime":0}`), 4, "not clean"},
		{"NUL in path", replace(3, `{"type":"symlink","path":"/b\u0000in","mode":511,"uid":0,"gid":0,"mtime":0,"target":"x"}`), 4, "NUL"},
		{"NUL in target", replace(2, `{"type":"symlink","path":"/bin","mode":511,"uid":0,"gid":0,"mtime":0,"target":"x\u0000"}`), 3, "NUL"},
		{"unknown type", replace(3, `{"type":"door","path":"/bin","mode":511,"uid":0,"gid":0,"mtime":0}`), 4, `unknown record type "door"`},
		{"ostree on a dir", replace(2, `{"type":"dir","path":"/bin","mode":493,"ostree":"`+strings.Repeat("1a", 32)+`"}`), 3, "has an ostree checksum"},
		{"mode with type bits", replace(2, `{"type":"symlink","path":"/bin","mode":41471,"uid":0,"gid":0,"mtime":0,"target":"x"}`), 3, "outside 07777"},
		{"hardlink forward", replace(9, `{"type":"hardlink","path":"/usr/bin/sh","linkTo":"/usr/bin/x"}`), 10, "not an earlier regular file"},
		{"hardlink to dir", replace(9, `{"type":"hardlink","path":"/usr/bin/sh","linkTo":"/usr"}`), 10, "not an earlier regular file"},
		{"big file inline", replace(4, `{"type":"file","path":"/etc/hostname","mode":420,"uid":0,"gid":0,"mtime":0,"size":65,"inline":"`+strings.Repeat("A", 88)+`"}`), 5, "inline limit"},
		{"small file not inline", replace(4, `{"type":"file","path":"/etc/hostname","mode":420,"uid":0,"gid":0,"mtime":0,"size":5}`), 5, "must carry its 5 bytes inline"},
		{"object-less file", replace(8, `{"type":"file","path":"/usr/bin/bash","mode":420,"uid":0,"gid":0,"mtime":0,"size":4097}`), 9, "names no object"},
		{"bad verity", replace(8, `{"type":"file","path":"/usr/bin/bash","mode":420,"uid":0,"gid":0,"mtime":0,"size":4097,"composefs":"XYZ"}`), 9, "hex digits"},
		{"truncated", strings.Join(good, "\n") + "\n", 0, "without an end record"},
		{"cut mid-line", sealed[:len(sealed)-20], n + 2, "no newline"},
		{"wrong count", strings.Replace(sealed, fmt.Sprintf(`"entries":%d`, n), fmt.Sprintf(`"entries":%d`, n+1), 1), n + 2, "counts"},
		{"wrong digest", sealed[:strings.LastIndex(sealed, `"sha256":"`)+10] + strings.Repeat("0", 64) + "\"}\n", n + 2, "sha256"},
		{"line dropped", seal(good, n)[:0] + strings.Join(append(append([]string(nil), good[:5]...), good[6:]...), "\n") + "\n" + sealed[strings.LastIndex(sealed[:len(sealed)-1], "\n")+1:], n + 1, "entries"},
		{"data after end", sealed + "{}\n", n + 3, "after the end record"},
		{"second image", insert(1, good[0]), 2, "second image record"},
		{"oversized line", replace(3, `{"type":"symlink","path":"/bin","mode":511,"target":"`+strings.Repeat("x", MaxEntryLine)+`"}`), 4, "longer than"},
		{"not JSON", replace(3, `{"type":"dir",`), 4, "not a valid record"},
		{"key in capitals", replace(2, `{"type":"symlink","PATH":"/bin","mode":511,"target":"usr/bin"}`), 3, `key "PATH" is not "path" (keys are case-sensitive)`},
		{"key in mixed case", replace(2, `{"type":"symlink","path":"/bin","Mode":511,"target":"usr/bin"}`), 3, `key "Mode" is not "mode"`},
		{"escaped key in capitals", replace(2, `{"type":"symlink","p\u0041th":"/bin","mode":511,"target":"usr/bin"}`), 3, `key "pAth" is not "path"`},
		{"nested key in capitals", strings.Replace(sealed, `"stores":{"composefs"`, `"stores":{"Composefs"`, 1), 1, `key "Composefs" in "stores" is not "composefs"`},
		{"duplicate key", replace(4, `{"type":"file","path":"/etc/hostname","mode":420,"size":5,"size":5,"inline":"aG9zdAo="}`), 5, `duplicate key "size" (keys are unique)`},
		{"duplicate escaped key", replace(4, `{"type":"file","path":"/etc/hostname","mode":420,"size":5,"s\u0069ze":5,"inline":"aG9zdAo="}`), 5, `duplicate key "size"`},
		{"duplicate xattr", replace(3, `{"type":"dir","path":"/etc","mode":493,"xattrs":{"user.a":"","user.a":"eA=="}}`), 4, `duplicate key "user.a" in "xattrs"`},
		{"invalid UTF-8", replace(2, "{\"type\":\"symlink\",\"path\":\"/bin\",\"mode\":511,\"target\":\"us\xffr/bin\"}"), 3, "invalid UTF-8 at byte 56"},
		{"unpaired surrogate", replace(2, `{"type":"symlink","path":"/bin","mode":511,"target":"us\udc80r/bin"}`), 3, `a string in "target" holds the escape \udc80`},
		{"reversed surrogates", replace(2, `{"type":"symlink","path":"/bin","mode":511,"target":"\ude00\ud83d"}`), 3, `\ude00, an unpaired surrogate`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readStream([]byte(c.stream))
			if err == nil {
				t.Fatalf("accepted:\n%.2000s", c.stream)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *stream.Error", err)
			}
			if se.Line != c.line || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %q (line %d), want line %d and %q", err, se.Line, c.line, c.want)
			}
		})
	}
}

func TestTruncatedStreamIsErrTruncated(t *testing.T) {
	data := writeStream(t, testImage(), testEntries())
	for cut := 1; cut < len(data); cut += 7 {
		_, err := readStream(data[:cut])
		if err == nil {
			t.Fatalf("a stream cut at byte %d of %d was accepted", cut, len(data))
		}
	}
	_, err := readStream(data[:bytes.LastIndex(data[:len(data)-1], []byte("\n"))+1])
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("stream without its end record: %v, want ErrTruncated", err)
	}
	// A producer that fails before its first line leaves an empty stream.
	if _, err := readStream(nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty stream: %v, want ErrTruncated", err)
	}
}

func TestWriterRefusesAndNeverSeals(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteEntry(&Entry{Type: TypeDir, Path: "/"}); err == nil {
		t.Fatal("entry before image accepted")
	}
	buf.Reset()
	w = NewWriter(&buf)
	if err := w.WriteImage(testImage()); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEntry(&Entry{Type: TypeDir, Path: "/"}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEntry(&Entry{Type: TypeDir, Path: "/b"}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEntry(&Entry{Type: TypeDir, Path: "/a"}); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("out-of-order entry: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write succeeded")
	}
	if bytes.Contains(buf.Bytes(), []byte(`"type":"end"`)) {
		t.Fatal("a failed stream was sealed with an end record")
	}
}

// TestRandomTrees checks the ordering rule on many generated trees: the
// sorted pre-order is accepted and reads back whole; swapping two entries
// is refused.
func TestRandomTrees(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		entries := randomTree(rng)
		data := writeStream(t, testImage(), entries)
		res, err := readStream(data)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(res.entries) != len(entries) {
			t.Fatalf("round %d: %d entries read, %d written", round, len(res.entries), len(entries))
		}
		if len(entries) < 3 {
			continue
		}
		i := 1 + rng.Intn(len(entries)-2)
		j := i + 1 + rng.Intn(len(entries)-i-1)
		swapped := append([]*Entry(nil), entries...)
		swapped[i], swapped[j] = swapped[j], swapped[i]
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.WriteImage(testImage())
		var werr error
		for _, e := range swapped {
			if werr = w.WriteEntry(e); werr != nil {
				break
			}
		}
		if werr == nil {
			t.Errorf("round %d: swapping %s and %s was accepted", round, entries[i].Path, entries[j].Path)
		}
	}
}

func randomTree(rng *rand.Rand) []*Entry {
	paths := map[string]bool{"/": true}
	var files []string
	names := []string{"a", "b", "a-b", "a.b", "ab", "z", "A", "\xff", "a b", "_"}
	var dirs = []string{"/"}
	for i := 0; i < 1+rng.Intn(40); i++ {
		parent := dirs[rng.Intn(len(dirs))]
		p := strings.TrimSuffix(parent, "/") + "/" + names[rng.Intn(len(names))]
		if paths[p] {
			continue
		}
		paths[p] = true
		if rng.Intn(3) == 0 {
			dirs = append(dirs, p)
		} else {
			files = append(files, p)
		}
	}
	isDir := map[string]bool{}
	for _, d := range dirs {
		isDir[d] = true
	}
	all := append(append([]string(nil), dirs...), files...)
	// Pre-order with sorted siblings is the order of component lists.
	sort.Slice(all, func(i, j int) bool {
		return lessPath(all[i], all[j])
	})
	var out []*Entry
	var firstFile string
	for _, p := range all {
		switch {
		case isDir[p]:
			out = append(out, &Entry{Type: TypeDir, Path: p, Mode: 0o755})
		case firstFile != "" && rng.Intn(4) == 0:
			out = append(out, &Entry{Type: TypeHardlink, Path: p, LinkTo: firstFile})
		default:
			size := int64(rng.Intn(200))
			e := &Entry{Type: TypeFile, Path: p, Mode: 0o644, Size: size}
			if size <= InlineMax {
				e.Inline = bytes.Repeat([]byte{'x'}, int(size))
				if size == 0 {
					e.Inline = nil
				}
			} else {
				e.Composefs = verity
			}
			if firstFile == "" {
				firstFile = p
			}
			out = append(out, e)
		}
	}
	return out
}

func lessPath(a, b string) bool {
	if a == "/" {
		return b != "/"
	}
	if b == "/" {
		return false
	}
	ca, cb := strings.Split(a[1:], "/"), strings.Split(b[1:], "/")
	for k := 0; k < len(ca) && k < len(cb); k++ {
		if ca[k] != cb[k] {
			return ca[k] < cb[k]
		}
	}
	return len(ca) < len(cb)
}

// TestWriterRefusesTextJSONCannotCarry: encoding/json would write U+FFFD
// for invalid UTF-8 in the image record's text, so the record would say
// something other than what the producer meant.
func TestWriterRefusesTextJSONCannotCarry(t *testing.T) {
	for field, set := range map[string]func(*Image){
		"source":                func(img *Image) { img.Source = "docker://h/\xff" },
		"stores.composefs.repo": func(img *Image) { img.Stores.Composefs.Repo = "/sys\xfeoot/composefs" },
	} {
		img := testImage()
		set(img)
		err := NewWriter(io.Discard).WriteImage(img)
		if err == nil || !strings.Contains(err.Error(), field+" is not valid UTF-8") {
			t.Errorf("%s: %v", field, err)
		}
	}
}

// TestSeal: sealing the lines of a list gives, byte for byte, the list
// the Writer makes; a sealed list and a bad line are refused by line.
func TestSeal(t *testing.T) {
	sealed := writeStream(t, testImage(), testEntries())
	unsealed := sealed[:bytes.LastIndexByte(sealed[:len(sealed)-1], '\n')+1]
	var out bytes.Buffer
	end, err := Seal(&out, bytes.NewReader(unsealed))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), sealed) {
		t.Errorf("sealed:\n%s\nwant:\n%s", out.Bytes(), sealed)
	}
	if end.Entries != int64(len(testEntries())) || end.Bytes != int64(len(unsealed)) {
		t.Errorf("end record %+v", end)
	}
	n := len(testEntries())
	for name, c := range map[string]struct {
		in   string
		want string
	}{
		"already sealed": {string(sealed), fmt.Sprintf("object list line %d: the list already has an end record: it is sealed", n+2)},
		"no entries":     {lines(t, testEntries())[0] + "\n", "object list: no entries after the image record"},
		"empty":          {"", "object list: empty stream, no image record"},
		"bad entry":      {strings.Join(append(lines(t, testEntries())[:2], `{"type":"file","path":"a"}`), "\n") + "\n", `object list line 3: path "a" is not absolute`},
	} {
		_, err := Seal(io.Discard, strings.NewReader(c.in))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
