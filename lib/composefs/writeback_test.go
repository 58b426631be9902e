package composefs

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// TestLargeObjectWritebackStarted: a large object's writeback starts as
// soon as it is complete, before the batch's syncfs (which alone used to
// write everything, while the writers waited for it), and nothing is
// named before that syncfs all the same.
func TestLargeObjectWritebackStarted(t *testing.T) {
	xfs := testfs.XFS(t, 0)
	r, err := Create(xfs.Path("composefs"), fsverity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The first object finds out whether the filesystem has fs-verity
	// (XFS has not), on a path of its own.
	if _, _, _, err := r.WriteObject(bytes.NewReader([]byte("first"))); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16)
	id, _, _, err := r.WriteObject(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Cachestat_t
	var cerr error
	if !r.pending.Pending(string(id), func(p *pendingObject) {
		cerr = unix.Cachestat(uint(p.t.Fd()), &unix.CachestatRange{}, &st, 0)
	}) {
		t.Fatal("the object is not pending")
	}
	if cerr != nil {
		t.Skipf("cachestat: %v", cerr)
	}
	if st.Cache == 0 || st.Dirty != 0 {
		t.Errorf("pending 1 MiB object: %d pages cached, %d still dirty; want its writeback started", st.Cache, st.Dirty)
	}
	if r.HasObject(id) && !r.isPending(id) {
		t.Error("named before the flush")
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(r.ObjectPath(id)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object after the flush: %d bytes, %v", len(got), err)
	}
}
