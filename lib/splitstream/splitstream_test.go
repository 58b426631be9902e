package splitstream

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// store is an in-memory object store keyed by a stand-in 64-byte id.
type store map[string][]byte

func (s store) put(data []byte) []byte {
	sum := sha512.Sum512(data)
	s[string(sum[:])] = data
	return sum[:]
}

func (s store) open(id []byte) (io.ReadCloser, error) {
	data, ok := s[string(id)]
	if !ok {
		return nil, errors.New("no such object")
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	objects := store{}
	w, err := NewWriter(2, ContentOCILayer)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	shared := objects.put(bytes.Repeat([]byte("shared"), 1000))
	for i := 0; i < 50; i++ {
		inline := make([]byte, rng.Intn(700))
		rng.Read(inline)
		w.Write(inline)
		want.Write(inline)
		if rng.Intn(3) == 0 {
			w.Write([]byte("x")) // two inline writes in a row must coalesce
			want.WriteString("x")
		}
		data := shared
		if i%4 != 0 {
			body := make([]byte, 65+rng.Intn(10000))
			rng.Read(body)
			data = objects.put(body)
		}
		if err := w.WriteExternal(data, int64(len(objects[string(data)]))); err != nil {
			t.Fatal(err)
		}
		want.Write(objects[string(data)])
	}
	w.Write([]byte("trailer"))
	want.WriteString("trailer")
	layerA, layerB := objects.put([]byte("a")), objects.put([]byte("b"))
	w.AddNamedRef("sha256:bbbb", layerB)
	w.AddNamedRef("sha256:aaaa", layerA)
	w.AddNamedRef("composefs.image.v1", layerA) // two names, one id
	file, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}

	r, err := NewReader(file, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.ContentType != ContentOCILayer || r.StreamSize != uint64(want.Len()) {
		t.Errorf("content type %#x size %d, want %#x %d", r.ContentType, r.StreamSize, ContentOCILayer, want.Len())
	}
	if len(r.StreamRefs) != 2 {
		t.Errorf("%d stream refs, want 2 (deduplicated)", len(r.StreamRefs))
	}
	wantNamed := map[string][]byte{"sha256:aaaa": layerA, "sha256:bbbb": layerB, "composefs.image.v1": layerA}
	if !reflect.DeepEqual(r.NamedRefs, wantNamed) {
		t.Errorf("named refs %v", r.NamedRefs)
	}
	seen := map[string]bool{}
	for _, id := range r.ObjectRefs {
		if seen[string(id)] {
			t.Errorf("object ref listed twice")
		}
		seen[string(id)] = true
	}
	var got bytes.Buffer
	if _, err := r.Reassemble(&got, objects.open); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("reassembled stream differs (%d vs %d bytes)", got.Len(), want.Len())
	}
}

func TestChunksNeverTwoInlineInARow(t *testing.T) {
	objects := store{}
	w, _ := NewWriter(2, ContentOCILayer)
	w.Write([]byte("a"))
	w.Write([]byte("b"))
	id := objects.put(bytes.Repeat([]byte{1}, 100))
	w.WriteExternal(id, 100)
	w.WriteExternal(id, 100)
	w.Write([]byte("c"))
	file, _ := w.Finish()
	r, err := NewReader(file, 2)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Inline != nil {
			kinds = append(kinds, "inline:"+string(c.Inline))
		} else {
			kinds = append(kinds, "external")
		}
	}
	want := []string{"inline:ab", "external", "external", "inline:c"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("chunks %q, want %q", kinds, want)
	}
	if len(r.ObjectRefs) != 1 {
		t.Errorf("%d object refs, want 1", len(r.ObjectRefs))
	}
}

// TestLayout pins the byte layout composefs-rs reads: header fields,
// section order and the named-ref record text.
func TestLayout(t *testing.T) {
	w, _ := NewWriter(1, ContentOCIConfig)
	id := bytes.Repeat([]byte{0xab}, 32)
	w.WriteExternal(id, 10)
	w.AddNamedRef("z", id)
	w.AddNamedRef("a", bytes.Repeat([]byte{0xcd}, 32))
	file, _ := w.Finish()
	if string(file[:11]) != "SplitStream" || file[11] != 0 || file[14] != 1 || file[15] != 12 {
		t.Fatalf("header % x", file[:16])
	}
	if getRange(file[16:]) != (fileRange{32, 112}) {
		t.Fatalf("info range %v", getRange(file[16:]))
	}
	in, _ := decodeInfo(file[32:112])
	if in.streamRefs.start != 112 || in.objectRefs.start != in.streamRefs.end || in.namedRefs.start != in.objectRefs.end ||
		in.stream.start != in.namedRefs.end || in.stream.end != uint64(len(file)) {
		t.Fatalf("sections out of composefs-rs order: %+v", in)
	}
	if in.contentType != 0x67666e6f6369636f || binary.LittleEndian.Uint64(file[32+64:]) != 0x67666e6f6369636f {
		t.Fatalf("content type %#x", in.contentType)
	}
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(file[in.namedRefs.start:in.namedRefs.end], nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain) != "1:a\x000:z\x00" {
		t.Errorf("named refs %q, want sorted by name with indexes in first-use order", plain)
	}
}

// TestLegacyHeader reads a stream whose header bootc 1.15 and earlier
// wrote: info range first, magic at offset 18.
func TestLegacyHeader(t *testing.T) {
	w, _ := NewWriter(2, ContentOCILayer)
	w.Write([]byte("hello"))
	file, _ := w.Finish()
	old := bytes.Clone(file)
	copy(old[0:16], file[16:32]) // info range
	binary.LittleEndian.PutUint16(old[16:], 0)
	copy(old[18:29], file[0:11]) // magic
	old[29], old[30], old[31] = file[11], file[14], file[15]
	r, err := NewReader(old, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := r.Reassemble(&got, store{}.open); err != nil || got.String() != "hello" {
		t.Fatalf("legacy stream read %q, %v", got.String(), err)
	}
}

func TestRejects(t *testing.T) {
	w, _ := NewWriter(2, ContentOCILayer)
	w.Write([]byte("hello"))
	good, _ := w.Finish()
	cases := map[string][]byte{
		"short":           good[:20],
		"bad magic":       append([]byte("Xplit"), good[5:]...),
		"wrong algorithm": func() []byte { b := bytes.Clone(good); b[14] = 1; return b }(),
		"bad version":     func() []byte { b := bytes.Clone(good); b[11] = 1; return b }(),
		"block size":      func() []byte { b := bytes.Clone(good); b[15] = 16; return b }(),
		"info outside":    func() []byte { b := bytes.Clone(good); binary.LittleEndian.PutUint64(b[24:], 1<<40); return b }(),
		"odd refs":        func() []byte { b := bytes.Clone(good); binary.LittleEndian.PutUint64(b[32+8:], 113); return b }(),
	}
	for name, file := range cases {
		if _, err := NewReader(file, 2); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzReader(f *testing.F) {
	w, _ := NewWriter(2, ContentOCILayer)
	w.Write([]byte("hello"))
	w.WriteExternal(bytes.Repeat([]byte{1}, 64), 100)
	w.AddNamedRef("x", bytes.Repeat([]byte{2}, 64))
	good, _ := w.Finish()
	f.Add(good)
	f.Fuzz(func(t *testing.T, file []byte) {
		r, err := NewReader(file, 2)
		if err != nil {
			return
		}
		defer r.Close()
		for i := 0; i < 1000; i++ {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	})
}

// TestRefsSharingAPrefix: ids equal in their first 16 bytes (the writer's
// index key) but different after are distinct refs, and each repeat of
// one maps back to it.
func TestRefsSharingAPrefix(t *testing.T) {
	w, err := NewWriter(2, ContentOCILayer)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]byte, 4)
	for i := range ids {
		ids[i] = bytes.Repeat([]byte{0xab}, 64)
		ids[i][63] = byte(i)
	}
	order := []int{0, 1, 2, 1, 3, 0, 2}
	for _, i := range order {
		if err := w.WriteExternal(ids[i], 100); err != nil {
			t.Fatal(err)
		}
	}
	file, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(file, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ObjectRefs) != len(ids) {
		t.Fatalf("%d object refs, want %d", len(r.ObjectRefs), len(ids))
	}
	for _, i := range order {
		c, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.External, ids[i]) {
			t.Fatalf("chunk refers to %x, want %x", c.External, ids[i])
		}
	}
}

// TestStreamBytesStable pins the bytes a Writer produces for 40 MB of
// inline data shaped like a layer's tar headers, with repeats from up to
// 7 MB back (within the encoder's window) and object references between
// them. A repository names a layer's stream by its diff ID, not by these
// bytes, so they could change unnoticed, with an option of the encoder
// or an upgrade of it; this makes such a change a decision.
func TestStreamBytesStable(t *testing.T) {
	if testing.Short() {
		t.Skip("40 MB of compression")
	}
	rng := rand.New(rand.NewSource(11))
	words := make([][]byte, 512)
	for i := range words {
		words[i] = make([]byte, 4+rng.Intn(12))
		for j := range words[i] {
			words[i][j] = 'a' + byte(rng.Intn(26))
		}
	}
	w, err := NewWriter(2, ContentOCILayer)
	if err != nil {
		t.Fatal(err)
	}
	var past []byte
	for len(past) < 40<<20 {
		var rec []byte
		if len(past) > 8<<20 && rng.Intn(4) == 0 {
			off := len(past) - 1 - rng.Intn(7<<20)
			rec = past[off : off+512+rng.Intn(4096)]
		} else {
			for len(rec) < 512 {
				rec = append(rec, words[rng.Intn(len(words))]...)
				rec = append(rec, byte(rng.Intn(256)))
			}
		}
		past = append(past, rec...)
		w.Write(rec)
		if rng.Intn(8) == 0 {
			var id [64]byte
			rng.Read(id[:])
			if err := w.WriteExternal(id[:], int64(1+rng.Intn(1<<20))); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	const want = "463fc8438798d7027c2034bfeea87746ec01abda61d3e63fd224ccac2f90744e"
	if got := fmt.Sprintf("%x", sha512.Sum512_256(out)); got != want {
		t.Errorf("stream of %d bytes has SHA-512/256 %s, want %s", len(out), got, want)
	}
}
