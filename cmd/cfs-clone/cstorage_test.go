package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// store is a containers-storage graph root and run root on a test
// filesystem.
type store struct{ graph, run string }

func newStore(dir string) store {
	return store{graph: filepath.Join(dir, "storage"), run: filepath.Join(dir, "run")}
}

func (s store) ref(name string) string {
	return "containers-storage:[overlay@" + s.graph + "+" + s.run + "]" + name
}

func runOK(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, errb, err := runErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, errb)
	}
	return out
}

func runErr(stdin []byte, name string, args ...string) ([]byte, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.String(), err
}

// skopeoInto copies an image into a store the way podman fills one.
func skopeoInto(t *testing.T, from string, s store, name string) {
	t.Helper()
	skopeo := testfs.RequireTool(t, "skopeo")
	// skip_mount_home keeps skopeo from leaving the overlay directory
	// mounted on itself.
	to := "containers-storage:[overlay@" + s.graph + "+" + s.run + ":overlay.skip_mount_home=true]" + name
	runOK(t, nil, skopeo, "--insecure-policy", "copy", "--quiet", from, to)
}

// podman runs podman 4.3 on a store of ours, with a storage.conf of its
// own so that the host's configuration stays out.
type podman struct {
	t        *testing.T
	bin, dir string
	conf     string
}

func newPodman(t *testing.T, root store, additional string) *podman {
	t.Helper()
	p := &podman{t: t, bin: testfs.RequireTool(t, "podman"), dir: t.TempDir()}
	graph, runRoot := root.graph, root.run+"-podman"
	opts := `skip_mount_home = "true"`
	if additional != "" {
		// An empty primary store reading the image from ours.
		graph, runRoot = filepath.Join(p.dir, "primary"), filepath.Join(p.dir, "run")
		opts += fmt.Sprintf("\nadditionalimagestores = [%q]", additional)
	}
	p.conf = filepath.Join(p.dir, "storage.conf")
	text := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n[storage.options]\n%s\n[storage.options.overlay]\nmountopt = \"nodev\"\n", graph, runRoot, opts)
	if err := os.WriteFile(p.conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// podman's own state (libpod database, runroot) goes with the test.
		p.cmd("system", "reset", "--force")
		exec.Command("umount", filepath.Join(graph, "overlay")).Run()
	})
	return p
}

func (p *podman) cmd(args ...string) ([]byte, string, error) {
	cmd := exec.Command(p.bin, append([]string{"--cgroup-manager", "cgroupfs", "--events-backend", "file"}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+p.conf, "HOME="+p.dir, "TMPDIR="+p.dir, "XDG_RUNTIME_DIR="+p.dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.String(), err
}

func (p *podman) run(args ...string) []byte {
	p.t.Helper()
	out, errb, err := p.cmd(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, errb)
	}
	return out
}

type inspected struct {
	ID     string `json:"Id"`
	RootFS struct {
		Layers []string `json:"Layers"`
	} `json:"RootFS"`
	RepoTags []string `json:"RepoTags"`
}

func (p *podman) inspect(ref string) inspected {
	p.t.Helper()
	var out []inspected
	if err := json.Unmarshal(p.run("image", "inspect", ref), &out); err != nil || len(out) != 1 {
		p.t.Fatalf("podman image inspect %s: %v", ref, err)
	}
	return out[0]
}

// roundTrip takes an image from an OCI layout into containers-storage
// (skopeo), into composefs (cfs-pull containers-storage:) and back into a
// fresh store (cfs-clone --to containers-storage). It returns the list
// cfs-clone wrote, and the two stores and the repository.
func roundTrip(t *testing.T, fs *testfs.FS, layoutRef, name string, cloneArgs ...string) (list []byte, a, b store, repo string) {
	t.Helper()
	a, b = newStore(fs.Path("a")), newStore(fs.Path("b"))
	repo = fs.Path("composefs")
	skopeoInto(t, layoutRef, a, name)
	pulled := runOK(t, nil, pullBinary, "--repo", repo, "--quiet", "--reflink", "always", a.ref(name))
	args := append([]string{"--to", "containers-storage", "--root", b.graph, "--runroot", b.run, "--quiet"}, cloneArgs...)
	list = runOK(t, pulled, binary, args...)
	return list, a, b, repo
}

func TestContainersStorageRoundTrip(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	layout := fs.Path("layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	const name = "localhost/cfs-roundtrip:1"
	list, a, b, repo := roundTrip(t, fs, "oci:"+layout+":latest", name, "--reflink", "always")
	// Layer IDs as c/image computes them: a later pull finds our layers.
	if got, want := layerIDs(t, b, name), layerIDs(t, a, name); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("layer IDs %v, skopeo's %v", got, want)
	}

	rec, entries, err := stream.ReadAll(bytes.NewReader(list))
	if err != nil {
		t.Fatalf("the list cfs-clone wrote: %v", err)
	}
	id := img.ConfigDigest.Encoded()
	if cs := rec.Stores.ContainersStorage; cs == nil || cs.ImageID != id || cs.Root != b.graph {
		t.Errorf("stores.containersStorage = %+v", cs)
	}
	if rec.Stores.Composefs == nil || rec.Stores.Composefs.Repo != repo {
		t.Errorf("stores.composefs = %+v", rec.Stores.Composefs)
	}
	if len(entries) != len(img.ExpectedTree().Paths())+1 {
		t.Errorf("%d entries passed through, the image has %d paths plus the root", len(entries), len(img.ExpectedTree().Paths()))
	}

	// Every file body over 64 bytes in the new store shares all its
	// extents (with the composefs objects it was cloned from).
	var shared, small int
	err = filepath.Walk(filepath.Join(b.graph, "overlay"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || !strings.Contains(p, "/diff/") {
			return err
		}
		if fi.Size() <= 64 {
			small++
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		exts, err := reflink.Extents(f)
		if err != nil {
			return err
		}
		for _, x := range exts {
			if !x.Shared() {
				t.Errorf("%s: extent not shared: %+v", p, x)
				return nil
			}
		}
		shared++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d shared files, %d small in the new store", shared, small)
	if shared < 50 {
		t.Errorf("only %d shared files in the new store (%d small)", shared, small)
	}

	diffIDs := make([]string, len(img.DiffIDs))
	for i, d := range img.DiffIDs {
		diffIDs[i] = d.String()
	}
	check := func(p *podman, ref string) {
		t.Helper()
		got := p.inspect(ref)
		if got.ID != id {
			t.Errorf("podman: image ID %s, want %s", got.ID, id)
		}
		if strings.Join(got.RootFS.Layers, " ") != strings.Join(diffIDs, " ") {
			t.Errorf("podman: layers %v, want %v", got.RootFS.Layers, diffIDs)
		}
		if len(got.RepoTags) != 1 || got.RepoTags[0] != name {
			t.Errorf("podman: names %v, want %s", got.RepoTags, name)
		}
	}

	// podman with the store as its root: same ID, same diff IDs, and the
	// mounted image is the image's tree.
	p := newPodman(t, b, "")
	check(p, name)
	mnt := strings.TrimSpace(string(p.run("image", "mount", name)))
	err = img.ExpectedTree().CompareDir(mnt, testimage.CompareOptions{Xattr: testimage.ExceptSELinux})
	p.run("image", "unmount", name)
	if err != nil {
		t.Errorf("podman image mount of the exported image: %v", err)
	}
	// ... and as an additional image store of an empty one.
	check(newPodman(t, store{}, b.graph), id)

	// Again: nothing new is written, the same list comes out.
	again, errb, err := runErr(list, binary, "--to", "containers-storage", "--root", b.graph, "--runroot", b.run)
	if err != nil {
		t.Fatalf("second clone: %v\n%s", err, errb)
	}
	if !strings.Contains(errb, "already recorded") || !strings.Contains(errb, "layers written 0, already present 3") {
		t.Errorf("second clone wrote again: %s", errb)
	}
	if !bytes.Equal(again, list) {
		t.Error("second clone gave a different list")
	}
}

func layerIDs(t *testing.T, s store, ref string) []string {
	t.Helper()
	st, err := cstorage.Open(s.graph, s.run)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	img, err := st.FindImage(ref)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range img.Layers {
		ids = append(ids, l.ID)
	}
	return ids
}

// TestCloneToContainersStorageBadInput: a clone that cannot share extents
// under always, a list that ends early and a repository missing a layer
// fail with one line, record no image, and the next run succeeds.
func TestCloneToContainersStorageBadInput(t *testing.T) {
	testfs.RequirePrivileged(t)
	xfs := testfs.XFS(t, 0)
	img, err := testimage.Generate(testimage.Options{Seed: 22})
	if err != nil {
		t.Fatal(err)
	}
	layout := xfs.Path("layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	const name = "localhost/cfs-clone-bad:1"
	a := newStore(xfs.Path("a"))
	skopeoInto(t, "oci:"+layout+":latest", a, name)
	repo := xfs.Path("composefs")
	list := runOK(t, nil, pullBinary, "--repo", repo, "--quiet", a.ref(name))
	id := img.ConfigDigest.Encoded()

	noImage := func(s store) {
		t.Helper()
		st, err := cstorage.Open(s.graph, s.run)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.FindImage(id); err == nil {
			t.Error("a failed clone recorded the image")
		}
		if layers, _ := st.Storage().Layers(); len(layers) != 0 {
			t.Errorf("a failed clone left %d layers", len(layers))
		}
	}
	fail := func(s store, input []byte, want ...string) {
		t.Helper()
		out, errb, err := runErr(input, binary, "--to", "containers-storage", "--root", s.graph, "--runroot", s.run, "--reflink", "always")
		msg := strings.TrimSpace(errb)
		if err == nil || strings.Contains(msg, "\n") {
			t.Errorf("want a one-line error, got %v: %q", err, msg)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not mention %q", msg, w)
			}
		}
		if _, _, err := stream.ReadAll(bytes.NewReader(out)); err == nil {
			t.Error("a failed clone wrote a complete list")
		}
		noImage(s)
	}

	t.Run("AlwaysOnExt4", func(t *testing.T) {
		ext4 := testfs.Ext4(t, 0)
		s := newStore(ext4.Path("b"))
		fail(s, list, "does not support reflinks", "--reflink=auto")
		out, errb, err := runErr(list, binary, "--to", "containers-storage", "--root", s.graph, "--runroot", s.run, "--reflink", "auto")
		if err != nil {
			t.Fatalf("auto on ext4: %v\n%s", err, errb)
		}
		if !strings.Contains(errb, "reflinked 0 (0 bytes), copied") || strings.Contains(errb, "copied 0 ") {
			t.Errorf("auto on ext4: %s", errb)
		}
		if rec, _, err := stream.ReadAll(bytes.NewReader(out)); err != nil || rec.Stores.ContainersStorage == nil {
			t.Errorf("auto on ext4: list %v", err)
		}
		if got := layerIDs(t, s, id); len(got) != 3 {
			t.Errorf("auto on ext4: %d layers", len(got))
		}
	})

	t.Run("TruncatedList", func(t *testing.T) {
		s := newStore(xfs.Path("truncated"))
		fail(s, list[:len(list)/2], "without an end record")
		if _, _, err := runErr(list[:len(list)/2], binary, "--to", "containers-storage", "--root", s.graph, "--runroot", s.run); exitCode(err) != 3 {
			t.Errorf("a truncated list: exit status %d, want 3", exitCode(err))
		}
		runOK(t, list, binary, "--to", "containers-storage", "--root", s.graph, "--runroot", s.run, "--quiet")
	})

	t.Run("MissingLayerStream", func(t *testing.T) {
		s := newStore(xfs.Path("missing"))
		link := filepath.Join(repo, "streams", "oci-layer-"+img.DiffIDs[1].String())
		target, err := os.Readlink(link)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(link)
		fail(s, list, img.DiffIDs[1].String())
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		runOK(t, list, binary, "--to", "containers-storage", "--root", s.graph, "--runroot", s.run, "--quiet")
	})
}

// TestPodmanRunsExportedImage runs a container from an image cfs-clone
// wrote: a static binary that prints a file of the image.
func TestPodmanRunsExportedImage(t *testing.T) {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "runc")
	fs := testfs.XFS(t, 0)
	layout := fs.Path("hello")
	helloLayout(t, layout)
	const name = "localhost/cfs-hello:1"
	_, _, b, _ := roundTrip(t, fs, "oci:"+layout+":latest", name)
	p := newPodman(t, b, "")
	out := p.run("run", "--rm", "--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", name, "/etc/msg")
	if string(out) != helloMsg {
		t.Errorf("podman run printed %q, want %q", out, helloMsg)
	}
}

const helloMsg = "hello from a layer cfs-clone wrote\n"

// helloLayout writes an OCI layout with one image: a static Go binary as
// /bin/hello (it prints the file named by its argument), /etc/msg, and
// the /usr a composefs image needs.
func helloLayout(t *testing.T, dir string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"os\"\n\nfunc main() {\n\tb, err := os.ReadFile(os.Args[1])\n\tif err != nil {\n\t\tos.Exit(1)\n\t}\n\tos.Stdout.Write(b)\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hello")
	gocmd, err := exec.LookPath("go")
	if err != nil {
		gocmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := exec.Command(gocmd, "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the entrypoint: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, m := range []struct {
		name string
		mode int64
		body []byte
	}{{"bin/", 0o755, nil}, {"bin/hello", 0o755, exe}, {"usr/", 0o755, nil}, {"etc/", 0o755, nil}, {"etc/msg", 0o644, []byte(helloMsg)}} {
		h := &tar.Header{Name: m.name, Mode: m.mode, Size: int64(len(m.body)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if strings.HasSuffix(m.name, "/") {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.body)
	}
	tw.Close()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(blobs, h), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + h
	}
	layerDigest := put(layer.Bytes())
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z","config":{"Entrypoint":["/bin/hello"]},"rootfs":{"type":"layers","diff_ids":[%q]}}`, layerDigest))
	configDigest := put(config)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		configDigest, len(config), layerDigest, layer.Len()))
	manifestDigest := put(manifest)
	index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}`, manifestDigest, len(manifest))
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
}
