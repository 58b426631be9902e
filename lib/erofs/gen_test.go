package erofs_test

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// genTree builds a deterministic tree with every file type, hardlinks,
// xattrs (shared and not), whiteouts, long names, a directory spanning
// several blocks, deep paths and files of every size class.
func genTree(t testing.TB, seed int64, n int) *erofs.Node {
	rng := rand.New(rand.NewSource(seed))
	root := erofs.NewDir("", 0o755)
	root.MtimeSec = 1700000000
	mustAdd := func(d, c *erofs.Node) *erofs.Node {
		if err := d.AddChild(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	big := mustAdd(root, erofs.NewDir("big", 0o755))
	deep := root
	for i := 0; i < 40; i++ {
		deep = mustAdd(deep, erofs.NewDir(fmt.Sprintf("d%02d", i), 0o750))
	}
	mustAdd(deep, &erofs.Node{Name: strings.Repeat("L", 255), Mode: erofs.TypeRegular | 0o644, Size: 3, Content: []byte("abc")})
	var files []*erofs.Node
	sizes := []uint64{0, 1, 63, 64, 65, 4095, 4096, 4097, 1 << 20, 1<<32 + 5}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f%05d-%s", i, strings.Repeat("x", rng.Intn(40)))
		nd := &erofs.Node{Name: name, UID: uint32(rng.Intn(3)) * 70000, GID: uint32(rng.Intn(2)),
			MtimeSec: 1700000000 + int64(rng.Intn(3)), MtimeNsec: uint32(rng.Intn(2) * 999999999)}
		switch i % 9 {
		case 0, 1, 2:
			sz := sizes[rng.Intn(len(sizes))]
			nd.Mode = erofs.TypeRegular | 0o644
			if sz > 0 && sz <= erofs.InlineThreshold {
				nd.Size, nd.Content = sz, []byte(strings.Repeat("z", int(sz)))
			} else if sz > 0 {
				d := make([]byte, 32)
				rng.Read(d)
				nd.SetExternal(d, sz)
			}
			files = append(files, nd)
		case 3:
			nd.Mode = erofs.TypeSymlink | 0o777
			nd.Payload = strings.Repeat("t/", 1+rng.Intn(600))
		case 4:
			nd.Mode = erofs.TypeChar | 0o600
			nd.Rdev = uint64(rng.Intn(2)) * 259 // 0 => whiteout
		case 5:
			nd.Mode = erofs.TypeBlock | 0o600
			nd.Rdev = 2049
		case 6:
			nd.Mode = erofs.TypeFifo | 0o644
		case 7:
			nd.Mode = erofs.TypeSocket | 0o644
		case 8:
			nd.Mode = erofs.TypeDir | 0o755
		}
		if rng.Intn(3) == 0 {
			nd.SetXattr("user.common", []byte("shared-value"))
		}
		if rng.Intn(5) == 0 {
			nd.SetXattr(fmt.Sprintf("user.own%d", i), []byte(strings.Repeat("v", rng.Intn(100))))
		}
		if rng.Intn(7) == 0 {
			nd.SetXattr("trusted.overlay.custom", []byte("escaped"))
		}
		parent := big
		if i%2 == 1 {
			parent = root
		}
		mustAdd(parent, nd)
	}
	for i := 0; i < len(files) && i < 50; i += 5 {
		mustAdd(deep, &erofs.Node{Name: fmt.Sprintf("hl%d", i), LinkTo: files[i]})
	}
	return root
}

// TestGeneratedRoundTrip: image -> reader -> writer is the identity on a
// tree with every feature.
func TestGeneratedRoundTrip(t *testing.T) {
	for _, v := range []erofs.Options{erofs.V1, {Version: 0, MaxVersion: 0}} {
		img := buildImage(t, genTree(t, 2, 5000), v)
		im := readImage(t, img)
		img2 := buildImage(t, im.Root, erofs.Options{Version: im.Version, MaxVersion: im.Version})
		if string(img) != string(img2) {
			t.Fatalf("version %d: round trip differs", v.Version)
		}
	}
}
