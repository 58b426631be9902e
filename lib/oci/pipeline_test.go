package oci

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// TestPipelinedImportIsInOrder: bodies stored by the workers (no member
// callback) give the stream, objects and stats that storing each body in
// turn gives (with one), for bodies from one block to more than the
// budget in flight, repeated ones included, and the layer reassembles
// byte for byte.
func TestPipelinedImportIsInOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	body := func(n int) string {
		b := make([]byte, n)
		rng.Read(b)
		return string(b)
	}
	big := body(pipelineBudget + 3*pipelineChunk/2)
	var members []tm
	for i, n := range []int{0, 64, 65, 4095, 4096, 4097, 100000, pipelineChunk, pipelineChunk + 1, 3*pipelineChunk - 7} {
		members = append(members, tm{name: "f" + strings.Repeat("x", i), body: body(n)})
	}
	members = append(members, tm{name: "big", body: big}, tm{name: "big-again", body: big}, tm{name: "d", typ: '5'})
	for i := 0; i < 300; i++ {
		members = append(members, tm{name: "d/s" + strings.Repeat("y", i%50) + string(rune('a'+i%26)) + string(rune('a'+i/26)), body: body(rng.Intn(20000))})
	}
	data := tarOf(t, members...)
	d := digestOf(data)

	piped, serial := newRepo(t), newRepo(t)
	before := pipelinedBodies.Load()
	st1, err := ImportLayer(piped, bytes.NewReader(data), d, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every body over 64 bytes went to the workers: without a callback
	// the pipeline is what stores them.
	if got := pipelinedBodies.Load() - before; got != int64(st1.ObjectsNew+st1.ObjectsPresent) {
		t.Fatalf("%d bodies pipelined, want the %d objects", got, st1.ObjectsNew+st1.ObjectsPresent)
	}
	serialBefore := pipelinedBodies.Load()
	var objects [][]byte
	st2, err := ImportLayer(serial, bytes.NewReader(data), d, func(m *Member) error {
		if m.Object != nil {
			objects = append(objects, m.Object)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := pipelinedBodies.Load() - serialBefore; n != 0 {
		t.Fatalf("%d bodies pipelined with a member callback", n)
	}
	if st1 != st2 || st1.ObjectsPresent != 1 {
		t.Fatalf("stats %+v, serially %+v", st1, st2)
	}
	id1, _, _ := piped.StreamID(composefs.LayerContentID(d))
	id2, _, _ := serial.StreamID(composefs.LayerContentID(d))
	if !bytes.Equal(id1, id2) {
		t.Fatalf("stream %x, serially %x", id1, id2)
	}
	for _, id := range objects {
		if !piped.HasObject(id) {
			t.Fatalf("object %x is missing", id)
		}
	}
	sr, _, err := piped.OpenStream(composefs.LayerContentID(d), splitstream.ContentOCILayer)
	if err != nil {
		t.Fatal(err)
	}
	{
		var out bytes.Buffer
		open := func(id []byte) (io.ReadCloser, error) { return piped.OpenObject(id) }
		if _, err := sr.Reassemble(&out, open); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("reassembled %d bytes (%v), want the %d of the tar", out.Len(), err, len(data))
		}
	}
}

// TestPipelinedImportTruncated: a tar that ends inside a body stored by a
// worker fails naming the member, and leaves no object of the part that
// came.
func TestPipelinedImportTruncated(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	b := make([]byte, 3*pipelineChunk)
	rng.Read(b)
	data := tarOf(t, tm{name: "whole", body: string(b[:5000])}, tm{name: "cut", body: string(b)})
	cut := data[:len(data)-2*pipelineChunk]
	repo := newRepo(t)
	_, err := ImportLayer(repo, bytes.NewReader(cut), digestOf(data), nil)
	if err == nil || !strings.Contains(err.Error(), `"cut"`) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated body: %v", err)
	}
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	var objects []string
	filepath.WalkDir(filepath.Join(repo.Path(), "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			objects = append(objects, p)
		}
		return err
	})
	if len(objects) != 1 {
		t.Fatalf("objects after the failed import: %v, want the one whole body", objects)
	}
}

// TestBatchedBodies: small bodies queued before a worker takes them are
// stored in batches, and each gets the id, the content record and the
// CRC that WriteObjectWith gives it alone; a body cut short in the
// middle of a batch fails alone; bodies too large for a batch, between
// them, are stored as they stream.
func TestBatchedBodies(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	repo, ref := newRepo(t), newRepo(t)
	p := newIdlePipeline(repo)
	limit := int(p.batchMax)
	sizes := []int{65, 4096, 4097, 9000, 200000, limit, limit + 1, 3000, 70000, 100, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000, 600000, 13000, limit - 1}
	const cut = 9 // this body's tar ends 10 bytes early
	bodies := make([][]byte, len(sizes))
	jobs := make([]*bodyJob, len(sizes))
	for i, n := range sizes {
		bodies[i] = make([]byte, n)
		rng.Read(bodies[i])
		r := io.Reader(bytes.NewReader(bodies[i]))
		if i == cut {
			r = bytes.NewReader(bodies[i][:n-10])
		}
		j, err := p.start(r, int64(n), []byte{'p', byte(i)})
		if (err != nil) != (i == cut) {
			t.Fatalf("body %d: start: %v", i, err)
		}
		jobs[i] = j
	}
	before := batchedBodies.Load()
	p.startWorkers(1)
	for _, j := range jobs {
		<-j.done
	}
	p.close()
	if got := batchedBodies.Load() - before; got < int64(len(sizes)-4) {
		t.Fatalf("%d bodies stored in batches of two or more, want all but the large ones", got)
	}
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if i == cut {
			if !errors.Is(j.err, io.ErrUnexpectedEOF) {
				t.Fatalf("cut body: %v", j.err)
			}
			continue
		}
		if j.err != nil {
			t.Fatalf("body %d (%d bytes): %v", i, sizes[i], j.err)
		}
		id, n, created, err := ref.WriteObjectWith(bytes.NewReader(bodies[i]), composefs.WriteOptions{RecordPrefix: []byte{'p', byte(i)}, CRC64: true})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(j.id, id) || j.n != n || j.created != created {
			t.Fatalf("body %d (%d bytes): id %x, %d bytes, created %v; alone %x, %d, %v", i, sizes[i], j.id, j.n, j.created, id, n, created)
		}
		got, want := objectRecords(t, repo, id), objectRecords(t, ref, id)
		if len(got.Content) != 1 || !got.HasCRC64 || !reflect.DeepEqual(got, want) {
			t.Fatalf("body %d: records %+v, alone %+v", i, got, want)
		}
	}
}

func objectRecords(t *testing.T, repo *composefs.Repository, id []byte) composefs.ObjectRecords {
	t.Helper()
	if err := repo.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := repo.OpenObject(id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := composefs.ReadObjectRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
