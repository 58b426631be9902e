package testimage

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/reexec"
)

func TestMain(m *testing.M) {
	// containers/storage re-executes the test binary to unpack layers in a
	// chroot; reexec.Init runs that child's work instead of the tests.
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// smallImage is generated once per test binary: most tests only read it.
var smallImage = sync.OnceValues(func() (*Image, error) { return Generate(Options{Seed: 1}) })

func mustSmallImage(t testing.TB) *Image {
	t.Helper()
	img, err := smallImage()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestGenerateIsDeterministic(t *testing.T) {
	start := time.Now()
	a, err := Generate(Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Scale 1 image generated in %v: %d paths, layers %d/%d/%d bytes", time.Since(start),
		len(a.tree), a.Layers[0].Size, a.Layers[1].Size, a.Layers[2].Size)
	b, err := Generate(Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if a.ManifestDigest != b.ManifestDigest {
		t.Fatalf("same seed, different manifests: %s vs %s", a.ManifestDigest, b.ManifestDigest)
	}
	c, err := Generate(Options{Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	if c.ManifestDigest == a.ManifestDigest {
		t.Fatal("seeds 7 and 8 gave the same manifest")
	}
	for i := range a.Layers {
		if a.Layers[i].Digest == c.Layers[i].Digest {
			t.Errorf("layer %d is the same for seeds 7 and 8", i)
		}
	}
}

func TestVersionChangesOnlyTheTopLayer(t *testing.T) {
	v1img := mustSmallImage(t)
	v2img, err := Generate(Options{Seed: 1, Version: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if v1img.Layers[i].Digest != v2img.Layers[i].Digest {
			t.Errorf("layer %d differs between versions; updates should share it", i)
		}
	}
	if v1img.Layers[2].Digest == v2img.Layers[2].Digest || v1img.ConfigDigest == v2img.ConfigDigest {
		t.Error("version 2.0 has the same top layer or config as 1.0")
	}
}

func TestCompressionOptions(t *testing.T) {
	want := map[Compression]string{Gzip: v1.MediaTypeImageLayerGzip, Zstd: v1.MediaTypeImageLayerZstd, Uncompressed: v1.MediaTypeImageLayer}
	var diffIDs []digest.Digest
	for comp, mediaType := range want {
		img, err := Generate(Options{Seed: 1, Compression: comp})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range img.Layers {
			if l.MediaType != mediaType {
				t.Errorf("compression %d: layer media type %s, want %s", comp, l.MediaType, mediaType)
			}
		}
		// Compression must not change what the layers contain.
		if diffIDs == nil {
			diffIDs = img.DiffIDs
		} else if strings.Join(digestStrings(img.DiffIDs), ",") != strings.Join(digestStrings(diffIDs), ",") {
			t.Errorf("compression %d changed the diff IDs", comp)
		}
	}
	if _, err := Generate(Options{Compression: Compression(99)}); err == nil {
		t.Error("an unknown compression was accepted")
	}
}

func digestStrings(ds []digest.Digest) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

// TestBlobsMatchDescriptors decompresses every layer with readers other
// than the ones that wrote it and checks sizes and both digests, and the
// config against image-spec.
func TestBlobsMatchDescriptors(t *testing.T) {
	img := mustSmallImage(t)
	mediaTypes := map[string]bool{}
	for i, l := range img.Layers {
		mediaTypes[l.MediaType] = true
		blob, err := io.ReadAll(l.Open())
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(blob) != l.Digest || int64(len(blob)) != l.Size {
			t.Errorf("layer %d: blob does not match its descriptor", i)
		}
		var tarStream io.Reader
		switch l.MediaType {
		case v1.MediaTypeImageLayerGzip:
			tarStream, err = gzip.NewReader(strings.NewReader(string(blob)))
		case v1.MediaTypeImageLayerZstd:
			var zr *zstd.Decoder
			zr, err = zstd.NewReader(strings.NewReader(string(blob)))
			if err == nil {
				defer zr.Close()
			}
			tarStream = zr
		default:
			tarStream = strings.NewReader(string(blob))
		}
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, tarStream)
		if err != nil {
			t.Fatalf("layer %d: decompressing: %v", i, err)
		}
		if digest.NewDigest(digest.SHA256, h) != l.DiffID || n != l.DiffSize || img.DiffIDs[i] != l.DiffID {
			t.Errorf("layer %d: uncompressed tar does not match its diff ID", i)
		}
	}
	if len(mediaTypes) != 3 {
		t.Errorf("media types %v, want gzip, zstd and uncompressed", mediaTypes)
	}

	var config v1.Image
	if err := json.Unmarshal(img.Config, &config); err != nil {
		t.Fatal(err)
	}
	if config.OS != "linux" || config.Architecture != "amd64" || config.Created == nil ||
		config.Config.Labels["containers.bootc"] != "1" || config.Config.Labels["org.opencontainers.image.version"] != "1.0" ||
		len(config.RootFS.DiffIDs) != len(img.Layers) || len(config.History) != len(img.Layers) {
		t.Errorf("config is missing bootc essentials: %s", img.Config)
	}
}

type tarMember struct {
	hdr   *tar.Header
	layer int
}

func readMembers(t *testing.T, img *Image) []tarMember {
	t.Helper()
	var out []tarMember
	for i, l := range img.Layers {
		r := l.OpenTar()
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			out = append(out, tarMember{hdr, i})
		}
		r.Close()
	}
	return out
}

// TestTarFeatures checks the layer tars hold the constructs the issue asks
// for, in the form real images use, so that the fixture cannot quietly
// lose coverage when someone edits layers.go.
func TestTarFeatures(t *testing.T) {
	img := mustSmallImage(t)
	members := readMembers(t, img)
	byName := map[string]*tar.Header{}
	dirsInLayer := map[int]map[string]bool{}
	var whiteouts, opaques, paxXattrs, nonUTF8, longPaths int
	for _, m := range members {
		h := m.hdr
		byName[h.Name] = h
		if dirsInLayer[m.layer] == nil {
			dirsInLayer[m.layer] = map[string]bool{}
		}
		if h.Typeflag == tar.TypeDir {
			dirsInLayer[m.layer][strings.TrimSuffix(h.Name, "/")] = true
		}
		base := path.Base(h.Name)
		switch {
		case base == opaqueWhiteout:
			opaques++
		case strings.HasPrefix(base, whiteoutPrefix):
			whiteouts++
		}
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				paxXattrs++
			}
		}
		if !isUTF8(h.Name) {
			nonUTF8++
		}
		if len(h.Name) > 100 {
			longPaths++
		}
		if strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "./") {
			t.Errorf("%q: member names should be relative without ./, like docker's", h.Name)
		}
		// Every member's parent has a header in the same layer, except the
		// deliberately implied one.
		if dir := path.Dir(strings.TrimSuffix(h.Name, "/")); dir != "." && !dirsInLayer[m.layer][dir] && dir != PathImpliedParent {
			t.Errorf("layer %d: %q comes before (or without) its parent directory", m.layer, h.Name)
		}
	}
	if whiteouts < 5 || opaques != 1 || paxXattrs < 8 || nonUTF8 < 3 || longPaths == 0 {
		t.Errorf("whiteouts %d, opaque %d, xattr records %d, non-UTF-8 names %d, long paths %d", whiteouts, opaques, paxXattrs, nonUTF8, longPaths)
	}
	if dirsInLayer[0][PathImpliedParent] {
		t.Errorf("%s has a header; it must be implied", PathImpliedParent)
	}

	for link, target := range map[string]string{"usr/bin/gunzip": "usr/bin/gzip", "usr/sbin/ping-link": PathCapability} {
		l, tg := byName[link], byName[target]
		if l == nil || tg == nil || l.Typeflag != tar.TypeLink || l.Linkname != target {
			t.Fatalf("%s is not a hardlink to %s", link, target)
		}
		if l.Mode != tg.Mode || l.Uid != tg.Uid || l.PAXRecords["SCHILY.xattr.security.capability"] != tg.PAXRecords["SCHILY.xattr.security.capability"] {
			t.Errorf("hardlink %s does not carry its target's metadata", link)
		}
	}
	for name, mode := range map[string]int64{"usr/bin/su": 0o4755, "usr/bin/write": 0o2755, "tmp/": 0o1777, "root/": 0o700, "usr/share/empty/": 0o555} {
		if h := byName[name]; h == nil || h.Mode != mode {
			t.Errorf("%s: want mode %04o in the tar", name, mode)
		}
	}
	if h := byName["bin"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/bin" {
		t.Error("bin is not a symlink to usr/bin")
	}
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestExpectedTreeSemantics spot-checks the oracle against the layer rules
// written out by hand, one rule per case.
func TestExpectedTreeSemantics(t *testing.T) {
	tree := mustSmallImage(t).ExpectedTree()
	absent := []string{
		"usr/share/doc/old.txt",      // whiteout
		"etc/obsolete.conf",          // whiteout
		"usr/share/oldpkg",           // directory whiteout...
		"usr/share/oldpkg/sub/b",     // ...takes its content along
		"usr/bin/zcat",               // whiteout of one hardlink name
		"usr/share/opaque/a.txt",     // opaque directory hides lower content
		"usr/share/opaque/sub/c.txt", // at any depth
		"usr/share/opaque/sub2",      // added in layer 1, whited out in 2
		PathReplaced + "/inner.txt",  // directory replaced by a file
	}
	for _, p := range absent {
		if _, ok := tree[p]; ok {
			t.Errorf("%q should be gone", p)
		}
	}
	want := map[string]FileType{
		"usr/share/opaque/new.txt": TypeRegular, PathReplaced: TypeRegular, "usr/share/doc/keep.txt": TypeSymlink,
		"usr/lib/broken": TypeRegular, "bin": TypeSymlink, PathKernel: TypeRegular, PathInitramfs: TypeRegular,
		PathImpliedParent: TypeDir, "usr/share/i18n/caf\xe9.txt": TypeRegular, "etc/os-release": TypeSymlink,
	}
	for p, typ := range want {
		if e := tree[p]; e == nil || e.Type != typ {
			t.Errorf("%q: want a %s", p, typ)
		}
	}
	if e := tree[PathReplaced]; e != nil && (e.Mode != 0o600 || readAll(t, e) != "a file again in layer 2\n") {
		t.Errorf("%s: want layer 2's file, got mode %o", PathReplaced, e.Mode)
	}
	if e := tree["var/cache"]; e.Mode != 0o700 {
		t.Errorf("var/cache: layer 1 changed the mode to 0700, got %04o", e.Mode)
	}
	if e := tree[PathImpliedParent]; !e.Implicit || e.Mode != 0o755 || e.UID != 0 {
		t.Errorf("%s: want an implicit 0755 root directory, got %+v", PathImpliedParent, e)
	}
	if !strings.Contains(readAll(t, tree[PathOSRelease]), "VERSION_ID=1.0") {
		t.Error("os-release is not the one from layer 2")
	}
	// Hardlink groups after the whiteout of zcat.
	for _, p := range []string{"usr/bin/gzip", "usr/bin/gunzip"} {
		if tree[p].Hardlink != "usr/bin/gunzip" {
			t.Errorf("%s: hardlink group %q, want usr/bin/gunzip", p, tree[p].Hardlink)
		}
	}
	if tree["usr/bin/bash"].Hardlink != "" {
		t.Error("usr/bin/bash should have one name")
	}
	if tree["usr/sbin/ping-link"].Xattrs["security.capability"] != capNetRawEP {
		t.Error("the hardlink to ping lost its capability")
	}
	if e := tree["usr/share/sizes/size-4097"]; e.Size != 4097 || e.Digest == "" {
		t.Errorf("size-4097: size %d digest %q", e.Size, e.Digest)
	}
	if e := tree[PathKernel]; e.Size < 4*MiB || digestOf(t, e) != e.Digest {
		t.Errorf("kernel: size %d, or Open does not reproduce Digest", e.Size)
	}
	many := 0
	for p := range tree {
		if path.Dir(p) == PathManyEntries {
			many++
		}
	}
	if many != manyEntries {
		t.Errorf("%s has %d entries, want %d", PathManyEntries, many, manyEntries)
	}
	// ExpectedTree hands out copies.
	tree["etc/hostname"].Mode = 0
	if mustSmallImage(t).ExpectedTree()["etc/hostname"].Mode == 0 {
		t.Error("modifying one ExpectedTree result changed the next")
	}
}

func readAll(t *testing.T, e *Entry) string {
	t.Helper()
	b, err := io.ReadAll(e.Open())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func digestOf(t *testing.T, e *Entry) digest.Digest {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, e.Open()); err != nil {
		t.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h)
}

// TestScaleAddsBulkFiles keeps Scale cheap to test: Scale 3 adds 200 files.
func TestScaleAddsBulkFiles(t *testing.T) {
	small := mustSmallImage(t)
	bigger, err := Generate(Options{Seed: 1, Scale: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(bigger.tree) - len(small.tree); got < 2*bulkFilesPerScale {
		t.Errorf("Scale 3 added %d paths, want at least %d", got, 2*bulkFilesPerScale)
	}
}

// TestRegeneratedBlobMatches forces the streaming path that Large uses for
// every layer.
func TestRegeneratedBlobMatches(t *testing.T) {
	img, err := Generate(Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	l := img.Layers[0]
	l.blob = nil
	h := sha256.New()
	if _, err := io.Copy(h, l.Open()); err != nil {
		t.Fatal(err)
	}
	if digest.NewDigest(digest.SHA256, h) != l.Digest {
		t.Fatal("regenerated blob differs")
	}
}
