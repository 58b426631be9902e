package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/composefs"
)

// checkRepoConsistent asserts what a failed or concurrent pull must leave:
// every name in the repository resolves to a complete object, and tags
// point only at manifest streams that exist.
func checkRepoConsistent(t *testing.T, repoDir string) {
	t.Helper()
	repo, err := composefs.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	for _, dir := range []string{"streams", "images"} {
		entries, _ := os.ReadDir(filepath.Join(repoDir, dir))
		for _, e := range entries {
			if e.Name() == "refs" {
				continue
			}
			if _, err := os.Stat(filepath.Join(repoDir, dir, e.Name())); err != nil {
				t.Errorf("%s/%s is dangling: %v", dir, e.Name(), err)
			}
		}
	}
	tags, _ := repo.Tags()
	for _, tag := range tags {
		d, err := repo.ResolveTag(tag)
		if err != nil {
			t.Errorf("tag %s: %v", tag, err)
			continue
		}
		if _, ok, _ := repo.StreamID(composefs.ManifestContentID(d)); !ok {
			t.Errorf("tag %s points at a missing manifest stream", tag)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(repoDir, "objects", ".tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func tagCount(t *testing.T, repoDir string) int {
	entries, _ := os.ReadDir(filepath.Join(repoDir, "streams/refs/oci"))
	return len(entries)
}

func TestPullFromRegistryFetchesOnlyNewLayers(t *testing.T) {
	reg := testregistry.New(t)
	v1img, err := testimage.Generate(testimage.Options{Seed: 5, Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	v2img, err := testimage.Generate(testimage.Options{Seed: 5, Version: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	ref1 := reg.Push(t, "os", "1", v1img)
	ref2 := reg.Push(t, "os", "2", v2img)
	repoDir := filepath.Join(t.TempDir(), "composefs")

	res := cfsPull(t, "--repo", repoDir, "--tls-verify=false", "--insecure-policy", "--output", "none", ref1)
	if res.err != nil {
		t.Fatalf("%v\n%s", res.err, res.stderr)
	}
	res = cfsPull(t, "--repo", repoDir, "--tls-verify=false", "--insecure-policy", "--output", "none", ref2)
	if res.err != nil {
		t.Fatalf("%v\n%s", res.err, res.stderr)
	}
	for i, l := range v2img.Layers {
		shared := l.Digest == v1img.Layers[i].Digest
		if gets := reg.Gets(l.Digest); shared && gets != 1 || !shared && gets != 1 {
			t.Errorf("layer %d (shared=%v) fetched %d times", i, shared, gets)
		}
	}
	if !bytes.Contains(res.stderr, []byte("layers fetched 1, already present 2")) {
		t.Errorf("second image did not reuse the shared layers:\n%s", res.stderr)
	}
	if tagCount(t, repoDir) != 2 {
		t.Errorf("%d tags, want 2", tagCount(t, repoDir))
	}
	checkRepoConsistent(t, repoDir)
}

func TestPullHonoursSignaturePolicy(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 1})
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}]}`), 0o644)
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--signature-policy", policy, src)
	if res.err == nil || !bytes.Contains(res.stderr, []byte("refused by the signature policy")) {
		t.Fatalf("a rejecting policy let the pull through: %v\n%s", res.err, res.stderr)
	}
	if tagCount(t, repoDir) != 0 {
		t.Error("a refused image was tagged")
	}
}

// TestPullRegistryFaults makes the registry fail in the ways a network
// does; each pull must fail with one line naming the blob, tag nothing,
// and leave a repository the next pull completes.
func TestPullRegistryFaults(t *testing.T) {
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
	faults := map[string]testregistry.Fault{
		"corrupt byte":   {Kind: testregistry.CorruptByte, Target: big.Digest, Offset: big.Size / 2},
		"cut connection": {Kind: testregistry.CutConnection, Target: big.Digest, Offset: big.Size / 3},
		"server error":   {Kind: testregistry.StatusError, Target: big.Digest, Status: 500},
	}
	for name, f := range faults {
		t.Run(name, func(t *testing.T) {
			reg := testregistry.New(t)
			ref := reg.Push(t, "os", "1", img)
			repoDir := filepath.Join(t.TempDir(), "composefs")
			reg.Inject(f)
			res := cfsPull(t, "--repo", repoDir, "--tls-verify=false", "--insecure-policy", "--quiet", ref)
			if res.err == nil {
				t.Fatalf("the pull succeeded despite the fault:\n%s", res.stderr)
			}
			msg := strings.TrimSpace(string(res.stderr))
			if strings.Contains(msg, "\n") || !strings.Contains(msg, big.Digest.Encoded()[:12]) {
				t.Errorf("want one line naming the blob %s, got:\n%s", big.Digest, msg)
			}
			if len(res.stdout) > 0 {
				t.Errorf("a failed pull wrote an object list:\n%.300s", res.stdout)
			}
			if tagCount(t, repoDir) != 0 {
				t.Error("a failed pull tagged the image")
			}
			checkRepoConsistent(t, repoDir)
			reg.ClearFaults()
			if res := cfsPull(t, "--repo", repoDir, "--tls-verify=false", "--insecure-policy", "--output", "none", ref); res.err != nil {
				t.Fatalf("the pull after the fault failed: %v\n%s", res.err, res.stderr)
			}
			checkRepoConsistent(t, repoDir)
		})
	}
}

// layout writes an OCI layout of uncompressed layers given as raw tars,
// for layers no honest generator would make.
func layout(t *testing.T, layerMediaType string, tars ...[]byte) (string, []digest.Digest) {
	t.Helper()
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	os.MkdirAll(blobs, 0o755)
	put := func(b []byte) v1.Descriptor {
		d := digest.FromBytes(b)
		os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644)
		return v1.Descriptor{Digest: d, Size: int64(len(b))}
	}
	var diffIDs []digest.Digest
	var layers []v1.Descriptor
	for _, tb := range tars {
		desc := put(tb)
		desc.MediaType = layerMediaType
		layers = append(layers, desc)
		diffIDs = append(diffIDs, digest.FromBytes(tb))
	}
	cfg, _ := json.Marshal(v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cdesc := put(cfg)
	cdesc.MediaType = v1.MediaTypeImageConfig
	man, _ := json.Marshal(v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cdesc, Layers: layers})
	mdesc := put(man)
	mdesc.MediaType = v1.MediaTypeImageManifest
	mdesc.Annotations = map[string]string{v1.AnnotationRefName: "latest"}
	idx, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{mdesc}})
	os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir, layers2digests(layers)
}

func layers2digests(ls []v1.Descriptor) []digest.Digest {
	var out []digest.Digest
	for _, l := range ls {
		out = append(out, l.Digest)
	}
	return out
}

type member struct {
	name, link string
	typ        byte
	body       string
}

func rawTar(t *testing.T, ms ...member) []byte {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: m.typ, Mode: 0o755, ModTime: time.Unix(1, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(m.body))
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(m.body))
	}
	w.Close()
	return buf.Bytes()
}

func TestPullRefusesBadLayers(t *testing.T) {
	base := []member{{name: "usr/", typ: tar.TypeDir}, {name: "usr/bin/", typ: tar.TypeDir}}
	with := func(ms ...member) []byte { return rawTar(t, append(append([]member(nil), base...), ms...)...) }
	cases := map[string]struct {
		mediaType string
		tars      [][]byte
		want      string
	}{
		"dotdot member":     {v1.MediaTypeImageLayer, [][]byte{with(member{name: "usr/../../etc/shadow", body: "x"})}, `"usr/../../etc/shadow"`},
		"absolute member":   {v1.MediaTypeImageLayer, [][]byte{with(member{name: "/etc/shadow", body: "x"})}, `"/etc/shadow"`},
		"through symlink":   {v1.MediaTypeImageLayer, [][]byte{with(member{name: "lib", link: "/etc", typ: tar.TypeSymlink}), rawTar(t, member{name: "lib/evil", body: "x"})}, "/lib/evil"},
		"hardlink missing":  {v1.MediaTypeImageLayer, [][]byte{with(member{name: "usr/bin/x", link: "usr/bin/none", typ: tar.TypeLink})}, "usr/bin/none"},
		"hardlink escaping": {v1.MediaTypeImageLayer, [][]byte{with(member{name: "usr/bin/x", link: "../../etc/shadow", typ: tar.TypeLink})}, "escapes the image"},
		"duplicate":         {v1.MediaTypeImageLayer, [][]byte{with(member{name: "usr/bin/x", body: "1"}, member{name: "usr/bin/x", body: "2"})}, "appears twice"},
		"unsupported type":  {"application/vnd.example.not-a-layer", [][]byte{with()}, "unsupported media type"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir, _ := layout(t, c.mediaType, c.tars...)
			repoDir := filepath.Join(t.TempDir(), "composefs")
			res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "oci:"+dir+":latest")
			if res.err == nil {
				t.Fatal("accepted")
			}
			msg := strings.TrimSpace(string(res.stderr))
			if strings.Count(msg, "\n") > 0 || !strings.Contains(msg, c.want) {
				t.Errorf("want one line naming %q, got:\n%s", c.want, msg)
			}
			if tagCount(t, repoDir) != 0 {
				t.Error("a bad image was tagged")
			}
		})
	}
}

func TestPullRefusesTruncatedBlob(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	img.WriteOCILayout(dir, "latest")
	l := img.Layers[0]
	blob := testimage.BlobPath(dir, l.Digest)
	os.Truncate(blob, l.Size/2)
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "oci:"+dir+":latest")
	if res.err == nil || !bytes.Contains(res.stderr, []byte(l.Digest.Encoded()[:12])) {
		t.Fatalf("truncated blob: %v\n%s", res.err, res.stderr)
	}
	if tagCount(t, repoDir) != 0 {
		t.Error("tagged")
	}
	checkRepoConsistent(t, repoDir)
}

func TestPullFullFilesystem(t *testing.T) {
	fs := testfs.Tmpfs(t, 4<<20)
	_, src := ociLayout(t, testimage.Options{Seed: 1})
	repoDir := fs.Path("composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", src)
	if res.err == nil || !bytes.Contains(res.stderr, []byte("no space left")) {
		t.Fatalf("pull into a full filesystem: %v\n%s", res.err, res.stderr)
	}
	if strings.Count(strings.TrimSpace(string(res.stderr)), "\n") > 0 {
		t.Errorf("more than one line:\n%s", res.stderr)
	}
	if tagCount(t, repoDir) != 0 {
		t.Error("tagged")
	}
	checkRepoConsistent(t, repoDir)
}

func TestConcurrentPullsOfOneImage(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 7})
	repoDir := filepath.Join(t.TempDir(), "composefs")
	// Create the repository first: two creators racing is a separate matter
	// from two pulls racing, and Create handles it by comparing meta.json.
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(binary, "--repo", repoDir, "--insecure-policy", "--quiet", src)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			results[i] = result{out.Bytes(), errb.Bytes(), cmd.Run()}
			results[i].stdout, results[i].stderr = out.Bytes(), errb.Bytes()
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Errorf("pull %d: %v\n%s", i, r.err, r.stderr)
		}
		if i > 0 && !bytes.Equal(r.stdout, results[0].stdout) {
			t.Errorf("pull %d wrote a different object list", i)
		}
	}
	checkRepoConsistent(t, repoDir)
}

// TestPullRefusesBadSELinuxPolicy: an image that names an SELinux policy
// it does not ship, or ships a malformed one, cannot be labelled as bootc
// would, so no object list is written; --no-selinux still lists it.
func TestPullRefusesBadSELinuxPolicy(t *testing.T) {
	const files = "etc/selinux/targeted/contexts/files/"
	dirs := []member{{name: "usr/", typ: tar.TypeDir}, {name: "etc/", typ: tar.TypeDir}, {name: "etc/selinux/", typ: tar.TypeDir},
		{name: "etc/selinux/config", body: "SELINUX=enforcing\nSELINUXTYPE=targeted\n"}}
	policyDirs := []member{{name: "etc/selinux/targeted/", typ: tar.TypeDir}, {name: "etc/selinux/targeted/contexts/", typ: tar.TypeDir}, {name: files, typ: tar.TypeDir}}
	for name, c := range map[string]struct {
		extra []member
		want  string
	}{
		"missing":   {nil, "/" + files + "file_contexts: the SELinux policy \"targeted\" named in /etc/selinux/config has no file_contexts"},
		"bad type":  {append(policyDirs, member{name: files + "file_contexts", body: "/.*\tdefault_t\n/usr(/.*)?\t-z\tusr_t\n"}), "/" + files + "file_contexts:2: invalid file type \"-z\""},
		"bad regex": {append(policyDirs, member{name: files + "file_contexts", body: "/usr(/.*\tusr_t\n"}), "/" + files + "file_contexts:1: regular expression \"/usr(/.*\""},
		"symlink":   {append(policyDirs, member{name: files + "file_contexts", link: "/dev/null", typ: tar.TypeSymlink}), "/" + files + "file_contexts: not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			dir, _ := layout(t, v1.MediaTypeImageLayer, rawTar(t, append(append([]member(nil), dirs...), c.extra...)...))
			repoDir := filepath.Join(t.TempDir(), "composefs")
			res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "oci:"+dir+":latest")
			msg := strings.TrimSpace(string(res.stderr))
			if res.err == nil || strings.Count(msg, "\n") > 0 || !strings.Contains(msg, c.want) {
				t.Errorf("exit %v, want one line naming %q, got:\n%s", res.err, c.want, msg)
			}
			if len(res.stdout) != 0 {
				t.Errorf("an object list was written:\n%.300s", res.stdout)
			}
			t.Logf("%s", msg)
			res = cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "--no-selinux", "oci:"+dir+":latest")
			if res.err != nil || !bytes.Contains(res.stdout, []byte(`"type":"end"`)) {
				t.Errorf("--no-selinux: %v\n%s", res.err, res.stderr)
			}
		})
	}
}
