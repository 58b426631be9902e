package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/stream"
)

// TestPullHardlinkedSymlink: a layer may hardlink a symlink. The EROFS
// image keeps both names on one inode, as composefs-rs does; the object
// list spells the second name out as a symlink of its own, and so can be
// written from the tagged image (--from-repo) as well as by the pull.
func TestPullHardlinkedSymlink(t *testing.T) {
	dir, _ := layout(t, v1.MediaTypeImageLayer, rawTar(t,
		member{name: "usr/", typ: tar.TypeDir},
		member{name: "usr/bin/", typ: tar.TypeDir},
		member{name: "usr/bin/real", body: "#!/bin/sh\n"},
		member{name: "usr/bin/sym", link: "real", typ: tar.TypeSymlink},
		member{name: "usr/bin/zsym", link: "usr/bin/sym", typ: tar.TypeLink},
		member{name: "usr/bin/zz", link: "usr/bin/real", typ: tar.TypeLink},
	))
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "--tag", "t", "oci:"+dir+":latest")
	if res.err != nil {
		t.Fatalf("%v\n%s", res.err, res.stderr)
	}
	img, entries := readList(t, res.stdout)
	byPath := map[string]*stream.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	if e := byPath["/usr/bin/zsym"]; e == nil || e.Type != stream.TypeSymlink || e.Target != "real" {
		t.Errorf("the second name of the symlink is listed as %+v, want a symlink to \"real\"", e)
	}
	if e := byPath["/usr/bin/zz"]; e == nil || e.Type != stream.TypeHardlink || e.LinkTo != "/usr/bin/real" {
		t.Errorf("a hardlinked file is listed as %+v, want a hardlink to /usr/bin/real", e)
	}

	data, err := os.ReadFile(filepath.Join(repoDir, "images", img.Stores.Composefs.Image))
	if err != nil {
		t.Fatal(err)
	}
	im, err := erofs.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	bin := im.Root.Lookup("usr").Lookup("bin")
	if sym, zsym := bin.Lookup("sym"), bin.Lookup("zsym"); sym == nil || zsym == nil || sym.Inode() != zsym.Inode() {
		t.Errorf("the EROFS image does not keep the two symlink names on one inode")
	}

	again := cfsPull(t, "--repo", repoDir, "--from-repo", "t")
	if again.err != nil {
		t.Fatalf("--from-repo: %v\n%s", again.err, again.stderr)
	}
	readList(t, again.stdout)
}

// TestFromRepoUnknown: --from-repo with a tag or digest the repository
// does not have says so in one line, not with a raw readlink error.
func TestFromRepoUnknown(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 1})
	repoDir := filepath.Join(t.TempDir(), "composefs")
	if res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "--output", "none", src); res.err != nil {
		t.Fatalf("%v\n%s", res.err, res.stderr)
	}
	missing := "sha256:" + strings.Repeat("0", 64)
	for ref, want := range map[string]string{
		"localhost/nosuch": "cfs-pull: no such tag: localhost/nosuch (in " + repoDir + ")\n",
		missing:            "cfs-pull: no such image: manifest " + missing + " (in " + repoDir + ")\n",
	} {
		res := cfsPull(t, "--repo", repoDir, "--from-repo", ref)
		if res.err == nil || string(res.stderr) != want {
			t.Errorf("--from-repo %s: %v, stderr %q, want %q", ref, res.err, res.stderr, want)
		}
		if len(res.stdout) != 0 {
			t.Errorf("--from-repo %s wrote a list", ref)
		}
	}
}

// TestPullRefusesBadCapability: cfs-clone could never write a file whose
// security.capability the kernel refuses, so the pull refuses the layer
// before anything is tagged, naming the member.
func TestPullRefusesBadCapability(t *testing.T) {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 1, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
	} {
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			w.Write([]byte("x"))
		}
	}
	w.Close()
	dir, _ := layout(t, v1.MediaTypeImageLayer, buf.Bytes())
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "oci:"+dir+":latest")
	msg := strings.TrimSpace(string(res.stderr))
	if res.err == nil || strings.Contains(msg, "\n") || !strings.Contains(msg, `member "usr/bin/ping": /usr/bin/ping: security.capability revision 2 is 4 bytes, want 20`) {
		t.Errorf("exit %v, stderr:\n%s", res.err, msg)
	}
	if tagCount(t, repoDir) != 0 {
		t.Error("an image with an invalid capability was tagged")
	}
}

// TestPullStalledRegistry: a registry that stops sending mid-blob fails
// the pull after --low-speed-time, in one line naming the blob and the
// flags, and tags nothing.
func TestPullStalledRegistry(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 6})
	if err != nil {
		t.Fatal(err)
	}
	big := img.Layers[0]
	for _, l := range img.Layers {
		if l.Size > big.Size {
			big = l
		}
	}
	reg := testregistry.New(t)
	ref := reg.Push(t, "os", "1", img)
	reg.Inject(testregistry.Fault{Kind: testregistry.Stall, Target: big.Digest, Offset: big.Size / 3})
	repoDir := filepath.Join(t.TempDir(), "composefs")
	start := time.Now()
	res := cfsPull(t, "--repo", repoDir, "--tls-verify=false", "--insecure-policy", "--quiet", "--low-speed-time", "700ms", ref)
	msg := strings.TrimSpace(string(res.stderr))
	if res.err == nil || strings.Contains(msg, "\n") || !strings.Contains(msg, "blob "+big.Digest.String()+": the transfer stalled: under 1024 bytes/s for 700ms") ||
		!strings.Contains(msg, "--low-speed-limit") {
		t.Fatalf("after %v: %v\n%s", time.Since(start), res.err, msg)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the stall took %v to notice", took)
	}
	if tagCount(t, repoDir) != 0 {
		t.Error("a stalled pull tagged the image")
	}
	if res := cfsPull(t, "--repo", repoDir, "--low-speed-time", "-1s", ref); res.err == nil || !strings.Contains(string(res.stderr), "cannot be negative") {
		t.Errorf("a negative --low-speed-time: %v %s", res.err, res.stderr)
	}
}
