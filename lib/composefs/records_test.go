package composefs

import (
	"bytes"
	"crypto/sha256"
	"os"
	"testing"
)

func TestRecordsKeptWithObject(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("content records are trusted.* xattrs: root only")
	}
	r := newRepo(t)
	data := bytes.Repeat([]byte("record me "), 1000)
	sum := func(prefix []byte) [32]byte { return sha256.Sum256(append(append([]byte{}, prefix...), data...)) }
	id, _, created, err := r.WriteObjectWith(bytes.NewReader(data), WriteOptions{RecordPrefix: []byte("header A")})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	// The same bytes again, while the first object is pending: a second
	// record, for another prefix, joins the first.
	if _, _, created, err := r.WriteObjectWith(bytes.NewReader(data), WriteOptions{RecordPrefix: []byte("header B")}); err != nil || created {
		t.Fatal(created, err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	// Named before: an object this process did not just hash gets none.
	if _, _, _, err := r.WriteObjectWith(bytes.NewReader(data), WriteOptions{RecordPrefix: []byte("header C")}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(r.ObjectPath(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := ReadRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(rs), rs)
	}
	for _, p := range []string{"header A", "header B"} {
		got, ok := Lookup(rs, []byte(p))
		if !ok || got != sum([]byte(p)) {
			t.Errorf("record for %q: %x %v, want %x", p, got, ok, sum([]byte(p)))
		}
	}
	if _, ok := Lookup(rs, []byte("header C")); ok {
		t.Error("an object named before got a record")
	}
	// An object written without a prefix has none.
	plain, _, _, err := r.WriteObject(bytes.NewReader(data[:500]))
	if err != nil {
		t.Fatal(err)
	}
	r.Flush()
	g, err := os.Open(r.ObjectPath(plain))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if rs, err := ReadRecords(g); err != nil || rs != nil {
		t.Errorf("records of a plain object: %v %v", rs, err)
	}
}

func TestRecordsEncoding(t *testing.T) {
	var rs []Record
	for i := 0; i < 6; i++ {
		rs = append(rs, Record{Prefix: bytes.Repeat([]byte{byte(i)}, i*7), Sum: sha256.Sum256([]byte{byte(i)})})
	}
	got, err := DecodeRecords(EncodeRecords(rs))
	if err != nil || len(got) != len(rs) {
		t.Fatal(len(got), err)
	}
	for i := range rs {
		if !bytes.Equal(got[i].Prefix, rs[i].Prefix) || got[i].Sum != rs[i].Sum {
			t.Errorf("record %d differs", i)
		}
	}
	b := EncodeRecords(rs)
	for _, bad := range [][]byte{nil, {9}, b[:len(b)-1], b[:2]} {
		if _, err := DecodeRecords(bad); err == nil {
			t.Errorf("DecodeRecords(%x) accepted", bad)
		}
	}
}
