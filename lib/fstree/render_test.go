package fstree

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// viaNodes is the image the way it was made before WriteErofs: a whole
// erofs.Node tree, then erofs.Write.
func viaNodes(t *testing.T, root *Dir, opts erofs.Options) []byte {
	t.Helper()
	n, err := ToErofs(root)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := erofs.Write(&buf, n, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomTree makes a tree with every kind of entry the image writer
// treats differently: inline and external files (some with the same
// object, so their overlay xattrs are shared), hardlinks (also to a
// symlink and a device), whiteouts, escaped overlay xattrs, SELinux-like
// labels repeated across entries, setuid bits and nanosecond mtimes.
func randomTree(seed int64, entries int) *Dir {
	rng := rand.New(rand.NewSource(seed))
	labels := [][]byte{[]byte("system_u:object_r:usr_t:s0"), []byte("system_u:object_r:bin_t:s0")}
	stat := func() Stat {
		st := Stat{Mode: uint32(rng.Intn(0o10000)), UID: uint32(rng.Intn(3)), GID: uint32(rng.Intn(3)),
			Mtime: 1700000000 + int64(rng.Intn(1000)), MtimeNsec: uint32(rng.Intn(3) * 500)}
		switch rng.Intn(6) {
		case 0:
			st.Xattrs = map[string][]byte{"security.selinux": labels[rng.Intn(2)]}
		case 1:
			st.Xattrs = map[string][]byte{"user.x": []byte(fmt.Sprint(rng.Intn(4))), "trusted.overlay.redirect": []byte("/elsewhere")}
		}
		return st
	}
	objects := make([][]byte, 40)
	for i := range objects {
		d := sha512.Sum512([]byte{byte(i)})
		objects[i] = d[:]
	}
	root := NewDir(Stat{Mode: 0o755})
	dirs := []*Dir{root}
	var leaves []*Leaf
	for i := 0; i < entries; i++ {
		d := dirs[rng.Intn(len(dirs))]
		name := fmt.Sprintf("e%d-%s", i, strings.Repeat("x", rng.Intn(20)))
		switch k := rng.Intn(20); {
		case k < 3:
			nd := NewDir(stat())
			d.Set(name, nd)
			dirs = append(dirs, nd)
		case k < 5 && len(leaves) > 0:
			d.Set(name, leaves[rng.Intn(len(leaves))])
		default:
			l := &Leaf{Stat: stat(), Kind: Regular}
			switch rng.Intn(10) {
			case 0:
				l.Kind, l.Target = Symlink, "../target/"+name
			case 1:
				l.Kind, l.Rdev = CharDev, uint64(rng.Intn(2)*259)
			case 2:
				l.Kind, l.Rdev = BlockDev, 8<<8|1
			case 3:
				l.Kind = Fifo
			case 4:
				l.Inline = []byte(name)
				l.Size = int64(len(name))
			default:
				if rng.Intn(4) > 0 {
					o := rng.Intn(len(objects))
					l.Object, l.Size = objects[o], int64(65+o*4096)
				}
			}
			d.Set(name, l)
			leaves = append(leaves, l)
		}
	}
	return root
}

// TestWriteErofsIsWriteOfToErofs: the image built entry by entry is
// byte for byte the one built from a whole Node tree, which the
// mkcomposefs vectors hold to mkcomposefs's bytes.
func TestWriteErofsIsWriteOfToErofs(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		root := randomTree(seed, 300*int(seed))
		want := viaNodes(t, root, erofs.V1)
		var got bytes.Buffer
		if err := WriteErofs(&got, root, erofs.V1); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("seed %d: WriteErofs wrote %d bytes that differ from erofs.Write's %d", seed, got.Len(), len(want))
		}
	}
	// Version 0 too, where nothing forces version 1.
	root := randomTree(99, 500)
	want := viaNodes(t, root, erofs.Options{Version: 0, MaxVersion: 0})
	var got bytes.Buffer
	if err := WriteErofs(&got, root, erofs.Options{}); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("version 0: err %v, equal %v", err, bytes.Equal(got.Bytes(), want))
	}
	// An empty tree.
	empty := NewDir(Stat{Mode: 0o700})
	got.Reset()
	if err := WriteErofs(&got, empty, erofs.V1); err != nil || !bytes.Equal(got.Bytes(), viaNodes(t, empty, erofs.V1)) {
		t.Fatalf("empty tree: err %v", err)
	}
}

func TestWriteErofsRejects(t *testing.T) {
	root := NewDir(Stat{Mode: 0o755})
	root.Set("a/b", &Leaf{Kind: Regular})
	if err := WriteErofs(&bytes.Buffer{}, root, erofs.V1); err == nil || !strings.Contains(err.Error(), "/a/b") {
		t.Fatalf("a name with a slash: %v", err)
	}
	if err := WriteErofs(&bytes.Buffer{}, NewDir(Stat{}), erofs.Options{Version: 0, MaxVersion: 1}); err == nil {
		t.Fatal("a version range was accepted")
	}
	bad := NewDir(Stat{Mode: 0o755})
	bad.Set("f", &Leaf{Kind: Regular, Size: 100, Object: []byte{1, 2, 3}})
	if err := WriteErofs(&bytes.Buffer{}, bad, erofs.V1); err == nil || !strings.Contains(err.Error(), "/f") {
		t.Fatalf("a 3-byte digest: %v", err)
	}
}

// TestWriteErofsAllocations: making the image allocates about one object
// per entry (its inode) and nothing per entry that is thrown away: in a
// pull, whose heap is limited, garbage made per entry (a Node, an object
// path, a path string, slices for the overlay xattrs) made the collector
// scan the whole tree over and over while the image was written.
func TestWriteErofsAllocations(t *testing.T) {
	const dirs, files = 40, 50
	root := NewDir(Stat{Mode: 0o755})
	for i := 0; i < dirs; i++ {
		d := NewDir(Stat{Mode: 0o755, Mtime: 1})
		root.Set(fmt.Sprintf("d%02d", i), d)
		for j := 0; j < files; j++ {
			o := sha512.Sum512([]byte{byte(i), byte(j)})
			d.Set(fmt.Sprintf("file-%03d", j), &Leaf{Kind: Regular, Stat: Stat{Mode: 0o644, Mtime: 1}, Size: 4096, Object: o[:]})
		}
	}
	var buf bytes.Buffer
	allocs := testing.AllocsPerRun(2, func() {
		buf.Reset()
		if err := WriteErofs(&buf, root, erofs.V1); err != nil {
			t.Fatal(err)
		}
	})
	perEntry := allocs / (dirs * (files + 1))
	t.Logf("%.2f allocations per entry", perEntry)
	if perEntry > 2 {
		t.Errorf("%.0f allocations for %d entries: %.2f per entry, want at most 2", allocs, dirs*(files+1), perEntry)
	}
}
