package erofs_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
)

func dumpString(t testing.TB, root *erofs.Node) string {
	t.Helper()
	var b bytes.Buffer
	if err := dumpfile.Write(&b, root); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func readImage(t testing.TB, img []byte) *erofs.Image {
	t.Helper()
	im, err := erofs.Read(img)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestRoundTrip: for every asset, image -> reader -> writer gives the same
// bytes, and dumpfile -> image -> dump is a fixed point after the first
// pass (which normalises what the image does not keep, e.g. dir sizes).
func TestRoundTrip(t *testing.T) {
	for _, a := range assets(t) {
		t.Run(a.name, func(t *testing.T) {
			if testing.Short() && strings.HasSuffix(a.name, ".gz") {
				t.Skip("large asset; skipped in -short mode")
			}
			opts := assetOptions(t, a.path)
			img1 := buildImage(t, parseDump(t, readAsset(t, a.path), a.name), opts)
			im := readImage(t, img1)
			same := erofs.Options{Version: im.Version, MaxVersion: im.Version}
			img2 := buildImage(t, im.Root, same)
			if !bytes.Equal(img1, img2) {
				t.Fatalf("image -> reader -> writer differs (%d vs %d bytes)", len(img1), len(img2))
			}
			d1 := dumpString(t, im.Root)
			img3 := buildImage(t, parseDump(t, []byte(d1), "d1"), same)
			if !bytes.Equal(img1, img3) {
				t.Fatalf("dump -> image differs from the original image")
			}
			if d2 := dumpString(t, readImage(t, img3).Root); d1 != d2 {
				t.Fatalf("dump is not a fixed point:\n%s", firstDiff(d1, d2))
			}
		})
	}
}

func firstDiff(a, b string) string {
	la, lb := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	for i := 0; i < len(la) && i < len(lb); i++ {
		if !bytes.Equal(la[i], lb[i]) {
			return string(la[i]) + "\n" + string(lb[i])
		}
	}
	return "length differs"
}

// TestDumpExact: a canonical dumpfile survives dumpfile -> image -> dump
// unchanged, byte for byte.
func TestDumpExact(t *testing.T) {
	const in = `/ 4096 40755 4 0 0 0 1700000000.5 - - - security.selinux=system_u:object_r:root_t:s0
/a\x20b 5 100644 2 1000 1000 0 1700000001.123456789 - hello - user.k\x3dx=v\x3dy
/dev 0 20644 1 0 0 1027 1700000000.5 - - -
/dir 41 40700 2 0 0 0 1700000000.5 - - -
/dir/wh 0 20000 1 0 0 0 1700000000.5 - - -
/ext 70000 100755 1 0 0 0 1700000000.5 ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789
/fifo 0 10644 1 0 0 0 1700000000.5 - - -
/link 5 @100644 2 1000 1000 0 1700000001.123456789 /a\x20b hello - user.k\x3dx=v\x3dy
/opq 27 40700 2 0 0 0 1700000000.5 - - - trusted.overlay.opaque=y
/sym 3 120777 1 0 0 0 1700000000.5 a/b - -
`
	root := parseDump(t, []byte(in), "in")
	img := buildImage(t, root, erofs.V1)
	out := dumpString(t, readImage(t, img).Root)
	want := in
	if out != want {
		t.Errorf("dump differs:\n%s", firstDiff(want, out))
	}
}
