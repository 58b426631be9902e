package composefs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc64"
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

// TestCRCRecordKeptWithObject: the CRC-64/ISO asked for is computed in the
// write's pass and kept beside the content records, also on an object
// that gets a second content record while pending.
func TestCRCRecordKeptWithObject(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("content records are trusted.* xattrs: root only")
	}
	r := newRepo(t)
	data := bytes.Repeat([]byte("crc me "), 3000)
	id, _, _, err := r.WriteObjectWith(bytes.NewReader(data), WriteOptions{RecordPrefix: []byte("header A"), CRC64: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.WriteObjectWith(bytes.NewReader(data), WriteOptions{RecordPrefix: []byte("header B"), CRC64: true}); err != nil {
		t.Fatal(err)
	}
	// CRC only, no prefix.
	only, _, _, err := r.WriteObjectWith(bytes.NewReader(data[:777]), WriteOptions{CRC64: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	want := crc64.Checksum(data, crc64.MakeTable(crc64.ISO))
	f, err := os.Open(r.ObjectPath(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := ReadObjectRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	if !o.HasCRC64 || o.CRC64 != want || len(o.Content) != 2 {
		t.Fatalf("records %+v, want CRC %x and two content records", o, want)
	}
	g, err := os.Open(r.ObjectPath(only))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if crc, ok, err := ReadCRC64(g); err != nil || !ok || crc != crc64.Checksum(data[:777], crc64.MakeTable(crc64.ISO)) {
		t.Fatalf("CRC-only object: %x %v %v", crc, ok, err)
	}
	if rs, err := ReadRecords(g); err != nil || rs != nil {
		t.Fatalf("CRC-only object has content records %v %v", rs, err)
	}
}

// TestObjectRecordsVersions: version 2 round-trips with and without a CRC;
// a version 1 value (written before CRC records) still reads, without a
// CRC; a field of an unknown kind is skipped; a wrong CRC field is refused.
func TestObjectRecordsVersions(t *testing.T) {
	rs := []Record{{Prefix: []byte("p1"), Sum: sha256.Sum256([]byte("1"))}, {Prefix: nil, Sum: sha256.Sum256([]byte("2"))}}
	for _, o := range []ObjectRecords{{Content: rs}, {Content: rs, CRC64: 0x0123456789abcdef, HasCRC64: true}, {HasCRC64: true}} {
		got, err := DecodeObjectRecords(EncodeObjectRecords(o))
		if err != nil || got.HasCRC64 != o.HasCRC64 || got.CRC64 != o.CRC64 || len(got.Content) != len(o.Content) {
			t.Fatalf("%+v came back as %+v, %v", o, got, err)
		}
		for i := range o.Content {
			if !bytes.Equal(got.Content[i].Prefix, o.Content[i].Prefix) || got.Content[i].Sum != o.Content[i].Sum {
				t.Errorf("record %d differs", i)
			}
		}
	}
	// Version 1, as the first writers encoded it.
	v1 := []byte{1}
	for _, r := range rs {
		v1 = binary.BigEndian.AppendUint16(v1, uint16(len(r.Prefix)))
		v1 = append(v1, r.Prefix...)
		v1 = append(v1, r.Sum[:]...)
	}
	got, err := DecodeObjectRecords(v1)
	if err != nil || got.HasCRC64 || len(got.Content) != 2 || string(got.Content[0].Prefix) != "p1" || got.Content[1].Sum != rs[1].Sum {
		t.Fatalf("version 1: %+v %v", got, err)
	}
	b := EncodeObjectRecords(ObjectRecords{Content: rs[:1], CRC64: 7, HasCRC64: true})
	withUnknown := append(append([]byte{}, b...), 99, 0, 3, 'x', 'y', 'z')
	if got, err := DecodeObjectRecords(withUnknown); err != nil || got.CRC64 != 7 || len(got.Content) != 1 {
		t.Fatalf("unknown field: %+v %v", got, err)
	}
	for _, bad := range [][]byte{
		append([]byte{2}, fieldCRC64, 0, 4, 1, 2, 3, 4),
		append(append([]byte{}, b...), fieldCRC64, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1), // two CRCs
		append([]byte{2}, fieldContent, 0, 31),
		{3},
	} {
		if _, err := DecodeObjectRecords(bad); err == nil {
			t.Errorf("DecodeObjectRecords(%x) accepted", bad)
		}
	}
}

// TestWriteObjectsAsOneByOne: bodies written together get what
// WriteObjectWith gives each alone (id, "created", records), the same
// body twice in one batch is one object with both records, and a body
// whose record prefix is too long is stored without a content record.
func TestWriteObjectsAsOneByOne(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("content records are trusted.* xattrs: root only")
	}
	batch, alone := newRepo(t), newRepo(t)
	a := bytes.Repeat([]byte("a body "), 700)
	b := bytes.Repeat([]byte("another "), 20)
	long := bytes.Repeat([]byte{'p'}, MaxRecordPrefix+1)
	bodies := [][]byte{a, b, a, bytes.Repeat([]byte("big "), 70000)}
	opts := []WriteOptions{{RecordPrefix: []byte("A"), CRC64: true}, {RecordPrefix: long, CRC64: true}, {RecordPrefix: []byte("A2")}, {}}
	got := batch.WriteObjects(bodies, opts)
	if len(got) != len(bodies) {
		t.Fatalf("%d results for %d bodies", len(got), len(bodies))
	}
	for i, body := range bodies {
		id, _, created, err := alone.WriteObjectWith(bytes.NewReader(body), opts[i])
		if err != nil || got[i].Err != nil {
			t.Fatalf("body %d: %v / %v", i, got[i].Err, err)
		}
		if !bytes.Equal(got[i].ID, id) || got[i].Created != created {
			t.Fatalf("body %d: %x created %v, alone %x created %v", i, got[i].ID, got[i].Created, id, created)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := alone.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range bodies {
		rb, ra := recordsAt(t, batch, got[i].ID), recordsAt(t, alone, got[i].ID)
		if !bytes.Equal(EncodeObjectRecords(rb), EncodeObjectRecords(ra)) {
			t.Errorf("body %d: records %+v, alone %+v", i, rb, ra)
		}
	}
	if rs := recordsAt(t, batch, got[0].ID).Content; len(rs) != 2 {
		t.Errorf("the body written twice has %d content records, want 2", len(rs))
	}
}

// recordsAt reads the records of a named object.
func recordsAt(t *testing.T, r *Repository, id []byte) ObjectRecords {
	t.Helper()
	f, err := os.Open(r.ObjectPath(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := ReadObjectRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
