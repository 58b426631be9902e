package composefs

import (
	"bytes"
	"math/rand"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// TestNoPreallocationLeft: objects, streams and images written on XFS
// take no more disk than their blocks once named. XFS reserves space past
// the end of a growing file and, for a file that is unnamed when its
// writable descriptor closes, keeps it: the repository used to hold
// 1.3 to 2 times its content on disk after a pull.
func TestNoPreallocationLeft(t *testing.T) {
	xfs := testfs.XFS(t, 0)
	r, err := Create(xfs.Path("composefs"), fsverity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := rand.New(rand.NewSource(1))
	var ids [][]byte
	for i, size := range []int{70 << 10, 200 << 10, 1 << 20, 3<<20 + 17, 8 << 20} {
		data := make([]byte, size)
		rng.Read(data)
		var id []byte
		if i%2 == 0 {
			id, _, _, err = r.WriteObject(bytes.NewReader(data))
		} else {
			id, err = r.EnsureObject(data)
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	image := make([]byte, 5<<20)
	rng.Read(image)
	if _, err := r.WriteImage(image); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	check := func(p string) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if alloc, want := st.Blocks*512, (st.Size+4095)&^4095; alloc > want {
			t.Errorf("%s: %d bytes hold %d bytes on disk, %d past its last block", p, st.Size, alloc, alloc-want)
		}
	}
	for _, id := range ids {
		check(r.ObjectPath(id))
	}
	images, err := os.ReadDir(xfs.Path("composefs", "images"))
	if err != nil || len(images) == 0 {
		t.Fatalf("no image written: %v", err)
	}
	for _, e := range images {
		check(xfs.Path("composefs", "images", e.Name()))
	}
}
