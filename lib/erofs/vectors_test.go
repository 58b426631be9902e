package erofs_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// TestAssetVectors reproduces the sha256 of mkcomposefs --from-file output
// for every dumpfile of the composefs C test-suite.
func TestAssetVectors(t *testing.T) {
	for _, a := range assets(t) {
		t.Run(a.name, func(t *testing.T) {
			root := parseDump(t, readAsset(t, a.path), a.name)
			img := buildImage(t, root, assetOptions(t, a.path))
			sum := sha256.Sum256(img)
			if got := hex.EncodeToString(sum[:]); got != a.sha256 {
				t.Errorf("image sha256 = %s, want %s (%d bytes)", got, a.sha256, len(img))
			}
		})
	}
}

// TestShouldFail: malformed dumpfiles are rejected with an error naming the
// line.
func TestShouldFail(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(assetsDir(t), "should-fail-*.dump"))
	if len(files) == 0 {
		t.Fatal("no should-fail dumpfiles")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data := readAsset(t, f)
			root, err := dumpfile.Parse(bytes.NewReader(data), filepath.Base(f))
			if err == nil {
				// Some inputs are only wrong as a whole tree.
				err = erofs.Write(new(bytes.Buffer), root, erofs.V1)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), filepath.Base(f)+":") {
				t.Errorf("error does not name the input and line: %v", err)
			}
			t.Log(err)
		})
	}
}

func verity(t testing.TB, data []byte, alg fsverity.Algorithm) string {
	h := fsverity.New(alg)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// simpleTree is composefs-rs's "simple" test tree (tests/mkfs.rs).
func simpleTree(id []byte) *erofs.Node {
	root := erofs.NewDir("", 0o755)
	add := func(n *erofs.Node) {
		if err := root.AddChild(n); err != nil {
			panic(err)
		}
	}
	add(&erofs.Node{Name: "fifo", Mode: erofs.TypeFifo})
	add(&erofs.Node{Name: "regular-inline", Mode: erofs.TypeRegular, Size: 4, Content: []byte("hihi")})
	ext := &erofs.Node{Name: "regular-external"}
	ext.SetExternal(id, 1234)
	add(ext)
	add(&erofs.Node{Name: "chrdev", Mode: erofs.TypeChar, Rdev: 123})
	add(&erofs.Node{Name: "blkdev", Mode: erofs.TypeBlock, Rdev: 123})
	add(&erofs.Node{Name: "socket", Mode: erofs.TypeSocket})
	add(&erofs.Node{Name: "symlink", Mode: erofs.TypeSymlink, Payload: "/target"})
	return root
}

// TestRustPinnedDigests reproduces composefs-rs test_erofs_digest_stability
// (fs-verity SHA-256 of the image).
func TestRustPinnedDigests(t *testing.T) {
	id := bytes.Repeat([]byte{0x5a}, 32)
	cases := []struct {
		name string
		root *erofs.Node
		opts erofs.Options
		want string
	}{
		{"empty-v0", erofs.NewDir("", 0o755), erofs.Options{}, "8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682"},
		{"empty-v1", erofs.NewDir("", 0o755), erofs.V1, "14a26c957c84f6eb774b91205476adc13196c7c33b9dd97d08d43725ecb90b63"},
		{"simple-v0", simpleTree(id), erofs.Options{}, "9f3f5620ee0c54708516467d0d58741e7963047c7106b245d94c298259d0fa01"},
		{"simple-v1", simpleTree(id), erofs.V1, "ad6db6427568a1e4fdc772cbab7b6063f5eb4b33cb62982a740ba9213e5962b5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := buildImage(t, c.root, c.opts)
			if got := verity(t, img, fsverity.SHA256); got != c.want {
				t.Errorf("fs-verity = %s, want %s", got, c.want)
			}
		})
	}
	t.Run("empty-v1-sha512", func(t *testing.T) {
		img := buildImage(t, erofs.NewDir("", 0o755), erofs.V1)
		const want = "ee192e5a91c70428c8f2ca7abf8274b695494c70a9ffb277598ffbacf46e2cebd7de172c6d44a84c20f3f13cc97e7691ccce4974937fe866c2f6c83ddccd3f72"
		if got := verity(t, img, fsverity.SHA512); got != want {
			t.Errorf("fs-verity sha512 = %s, want %s", got, want)
		}
	})
	t.Run("simple-v1-sha512-ids", func(t *testing.T) {
		img := buildImage(t, simpleTree(bytes.Repeat([]byte{0x5a}, 64)), erofs.V1)
		const want = "9cd1950bab43a9c65fb151272061e7c41234234043860e5da698485f2503a0879c7f127de85f599580abc9fa5868c4b7d1fb727c64af05285b896ccde9546bdc"
		if got := verity(t, img, fsverity.SHA512); got != want {
			t.Errorf("fs-verity sha512 = %s, want %s", got, want)
		}
	})
	t.Run("special_v1-rs", func(t *testing.T) {
		// composefs-rs special_v1.dump is the C special.dump without the
		// inline-large lines, built as V1.
		data := readAsset(t, filepath.Join(assetsDir(t), "special.dump"))
		var kept []string
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if !strings.HasPrefix(l, "/inline-large") {
				kept = append(kept, l)
			}
		}
		img := buildImage(t, parseDump(t, []byte(strings.Join(kept, "")), "special_v1"), erofs.V1)
		const want = "b1c78c25db8638be5b9b483472d32ee9624d8d32ded626a91cd536116e8df97c"
		if got := verity(t, img, fsverity.SHA256); got != want {
			t.Errorf("fs-verity = %s, want %s", got, want)
		}
	})
}
