package erofs

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// TestComputeSharedByValue: the shared table holds exactly the (name,
// value) pairs, as written to the image, that more than one inode has,
// however each is held: placeholders made from a digest, stored values
// that spell the same bytes (a redirect to another file's object), and
// values that only look alike (upper-case hex, another digest length).
func TestComputeSharedByValue(t *testing.T) {
	var digests [][]byte
	for i := 0; i < 6; i++ {
		a, b := sha256.Sum256([]byte{byte(i)}), sha512.Sum512([]byte{byte(i)})
		digests = append(digests, a[:], b[:])
	}
	for seed := int64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewSource(seed))
		pick := func() []byte { return digests[rng.Intn(len(digests))] }
		userX := func() []Xattr {
			switch rng.Intn(5) {
			case 0:
				return []Xattr{{Name: "security.selinux", Value: []byte("l" + fmt.Sprint(rng.Intn(2)))}}
			case 1:
				return []Xattr{{Name: "trusted.overlay.redirect", Value: []byte("/" + ObjectPath(pick()))}}
			case 2:
				return []Xattr{{Name: "user.a", Value: []byte{}}, {Name: "trusted.overlay.metacopy", Value: appendMetacopy(nil, pick())}}
			}
			return nil
		}
		b, err := NewBuilder(V1)
		if err != nil {
			t.Fatal(err)
		}
		root, err := b.Root(NewDir("", 0o755))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			n := &Node{Name: fmt.Sprint("f", i), Mode: TypeRegular | 0o644, Size: 100, Xattrs: userX()}
			var err error
			switch rng.Intn(6) {
			case 0:
				_, err = b.AddExternal(root, n, pick())
			case 1:
				// A redirect to another object: the same value as that
				// object's own files have.
				n.SetExternal(pick(), 100)
				n.Payload = ObjectPath(pick())
				_, err = b.Add(root, n)
			case 2:
				n.SetExternal(pick(), 100)
				n.Payload = strings.ToUpper(ObjectPath(pick()))
				_, err = b.Add(root, n)
			case 3:
				// No digest: an empty metacopy, and a redirect that names
				// an object.
				n.Payload = ObjectPath(pick())
				_, err = b.Add(root, n)
			case 4:
				e, aerr := b.Add(root, n)
				if aerr == nil {
					aerr = e.SetDigest(pick())
				}
				err = aerr
			default:
				n.Mode, n.Size = TypeDir|0o755, 0
				_, err = b.Add(root, n)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		r := b.root
		r.setXattr(xattrOpaque, []byte("y"))
		addStubs(r)
		if err := finishDirs(r); err != nil {
			t.Fatal(err)
		}
		img := layout(r, 1, b.count)

		key := func(in *inode, x *Xattr) string { return x.Name + "\x00" + string(in.xattrValue(x, nil)) }
		uses := map[string]int{}
		for _, in := range img.inodes {
			for j := range in.xattrs {
				uses[key(in, &in.xattrs[j])]++
			}
		}
		want := map[string]bool{}
		for k, c := range uses {
			if c > 1 {
				want[k] = true
			}
		}
		got := map[string]bool{}
		for _, x := range img.shared {
			got[x.Name+"\x00"+string(x.Value)] = true
		}
		if len(got) != len(want) || len(img.shared) != len(want) {
			t.Fatalf("seed %d: %d shared pairs, %d distinct, want %d", seed, len(img.shared), len(got), len(want))
		}
		for k := range want {
			if !got[k] {
				t.Fatalf("seed %d: pair %q used more than once is not shared", seed, k)
			}
		}
		for _, in := range img.inodes {
			for j := range in.xattrs {
				k := key(in, &in.xattrs[j])
				if (img.sharedOff(in, j) >= 0) != want[k] {
					t.Fatalf("seed %d: inode %d pair %q: shared %v, used %d times", seed, in.ino, k, img.sharedOff(in, j) >= 0, uses[k])
				}
			}
		}
	}
}
