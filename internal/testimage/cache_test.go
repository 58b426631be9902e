package testimage

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/opencontainers/go-digest"
)

// TestCached: the first call writes the layout and its stats, the second
// finds them without generating (shown by a marker the first call could
// not have written), and the extracted tree matches ExpectedTree.
func TestCached(t *testing.T) {
	testfs.RequirePrivileged(t) // the tree's owners and security.* xattrs
	t.Setenv(CacheEnv, t.TempDir())
	opts := Options{Seed: 5, UTF8Names: true, Scale: 3, Sizes: SizesUsr}
	c := Cached(t, opts)
	img, err := Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stats != img.Stats() {
		t.Fatalf("cached stats %+v, generated %+v", c.Stats, img.Stats())
	}
	if _, err := os.Stat(BlobPath(c.Layout, img.ManifestDigest)); err != nil {
		t.Fatalf("cached layout lacks the manifest: %v", err)
	}
	// The layer blobs were written during the one serialization.
	for _, l := range img.Layers {
		f, err := os.Open(BlobPath(c.Layout, l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil || digest.NewDigest(digest.SHA256, h) != l.Digest {
			t.Fatalf("cached blob %s: %v, hashes to %x", l.Digest, err, h.Sum(nil))
		}
	}
	if c.Ref != "oci:"+c.Layout+":"+CacheTag {
		t.Errorf("Ref %q", c.Ref)
	}
	marker := filepath.Join(c.Layout, "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	again := Cached(t, opts)
	if again.Layout != c.Layout {
		t.Fatalf("second call: layout %s, first %s", again.Layout, c.Layout)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the second call regenerated the layout")
	}
	key := func(o Options) string {
		o, b, err := describe(o)
		if err != nil {
			t.Fatal(err)
		}
		return cacheKey(o, b)
	}
	if key(opts) == key(Options{Seed: 6, UTF8Names: true, Scale: 3, Sizes: SizesUsr}) {
		t.Fatal("another seed shares the cache entry")
	}

	tree := c.Tree(t)
	if err := img.ExpectedTree().CompareDir(tree, CompareOptions{}); err != nil {
		t.Fatal(err)
	}
	if again.Tree(t) != tree {
		t.Fatal("second Tree call extracted again")
	}
}

// TestSizesUsrShape checks the size mix Scale100k uses on a tenth of its
// files, described only (the bytes are never generated), which takes a
// fraction of a second; TestScale100kCached checks the whole image's
// entries and bytes where the image is generated.
func TestSizesUsrShape(t *testing.T) {
	opts := Scale100k(1)
	opts.Scale = 100
	_, b, err := describe(opts)
	if err != nil {
		t.Fatal(err)
	}
	var files, small16, small4 int
	var bytes int64
	for _, e := range b.applier.tree {
		if e.Type != TypeRegular {
			continue
		}
		files++
		bytes += e.Size
		if e.Size <= 16*KiB {
			small16++
		}
		if e.Size <= 4*KiB {
			small4++
		}
	}
	t.Logf("%d entries, %d files, %.2f GB, %.0f%% <= 4 KiB, %.0f%% <= 16 KiB", len(b.applier.tree), files, float64(bytes)/1e9,
		100*float64(small4)/float64(files), 100*float64(small16)/float64(files))
	if files < 10_000 || bytes < 250e6 {
		t.Errorf("want at least 10k files and 250 MB (3 GB at Scale 1000)")
	}
	// Debian's /usr: 66.5% <= 4 KiB, 86.3% <= 16 KiB.
	if f := float64(small4) / float64(files); f < 0.6 || f > 0.72 {
		t.Errorf("%.2f of the files <= 4 KiB, want about 0.66", f)
	}
	if f := float64(small16) / float64(files); f < 0.82 || f > 0.9 {
		t.Errorf("%.2f of the files <= 16 KiB, want about 0.86", f)
	}
}
