package erofs_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// FuzzRead: the reader must reject, never panic on, any input; what it
// accepts must be writable again without a panic. ForEachExternal must
// not panic either, must reject only what Read rejects, and must name
// the external files of Read's tree.
func FuzzRead(f *testing.F) {
	seeds := [][]byte{
		buildImage(f, erofs.NewDir("", 0o755), erofs.V1),
		buildImage(f, simpleTree(bytes.Repeat([]byte{0x5a}, 32)), erofs.V1),
		buildImage(f, simpleTree(bytes.Repeat([]byte{0x5a}, 64)), erofs.Options{}),
	}
	if dir := assetsDirOrEmpty(); dir != "" {
		for _, name := range []string{"special.dump", "longlink.dump", "bigfile-xattr.dump", "honggfuzz-long-symlink.dump"} {
			p := filepath.Join(dir, name)
			root := parseDump(f, readAsset(f, p), name)
			seeds = append(seeds, buildImage(f, root, assetOptions(f, p)))
		}
	}
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
		f.Add(s[:1200])
		flipped := append([]byte{}, s...)
		flipped[1152+2] ^= 0xff // root xattr count
		f.Add(flipped)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, serr := externalsStreamed(data)
		im, err := erofs.Read(data)
		if err != nil {
			return
		}
		if serr != nil {
			t.Fatalf("Read accepts what ForEachExternal rejects: %v", serr)
		}
		if want := externalsOfTree(im.Root); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("ForEachExternal %v, Read's tree %v", got, want)
		}
		_ = erofs.Write(new(bytes.Buffer), im.Root, erofs.Options{Version: im.Version, MaxVersion: im.Version})
	})
}
