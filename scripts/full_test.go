package scripts

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/internal/testregistry"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/dedupe"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/hoststatus"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

// bootcJSON is what bootc writes for each mode: serde's pretty printer,
// no trailing newline.
func bootcJSON(mode string) string {
	return "{\n  \"version\": 1,\n  \"unified\": \"" + mode + "\"\n}"
}

// classicHost is an ostree host that knows nothing of composefs: two
// releases deployed the classic way (2.0 booted, 1.0 the rollback), bound
// to composefs but with no composefs repository and no containers-storage
// yet; the images are only in the registry.
func classicHost(t *testing.T, fstype string) (*hostFixture, []*testimage.Image) {
	return classicHostScale(t, fstype, 1)
}

func classicHostScale(t testing.TB, fstype string, scale int) (*hostFixture, []*testimage.Image) {
	h := newHostScale(t, fstype, scale)
	v1, err := testimage.Generate(testimage.Options{Seed: 11, Version: "1.0", UTF8Names: true, Scale: scale})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := testimage.Generate(testimage.Options{Seed: 11, Version: "2.0", UTF8Names: true, Scale: scale})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)
	h.deployClassic(t, v2)
	h.cmdline = h.bootCmdline(t, 2)
	// The pipeline that made the trees filled a composefs repository: a
	// classic host has none.
	if err := os.RemoveAll(filepath.Join(h.sysroot, "composefs")); err != nil {
		t.Fatal(err)
	}
	must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs")
	return h, []*testimage.Image{v1, v2}
}

func (h *hostFixture) full(t testing.TB, args ...string) run {
	t.Helper()
	return sh(t, h.env, "bootc-set-unified", append([]string{"full", "--sysroot", h.sysroot, "--cmdline", h.cmdline}, args...)...)
}

func (h *hostFixture) noFlag(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(h.sysroot, "composefs/bootc.json")); !os.IsNotExist(err) {
		t.Errorf("composefs/bootc.json exists after a failure (%v)", err)
	}
	human, _ := h.status(t)
	if strings.Contains(human, "unified (") {
		t.Errorf("status says unified after a failure:\n%s", human)
	}
}

func TestSetUnifiedFullOstreeHost(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	h, imgs := classicHost(t, "xfs")
	r := must(t, h.full(t), "bootc-set-unified full")
	if strings.TrimSpace(r.stdout) != "Unified storage enabled for "+h.imageRef+"." {
		t.Errorf("full said:\n%s", r.stdout)
	}
	t.Logf("full:\n%s", r.stderr)
	if data, err := os.ReadFile(filepath.Join(h.sysroot, "composefs/bootc.json")); err != nil || string(data) != bootcJSON("enabled") {
		t.Errorf("bootc.json %q (%v)", data, err)
	}
	if got := strings.TrimSpace(must(t, sh(t, nil, "ostree", "config", "--repo="+h.sysroot+"/ostree/repo", "get", "composefs.unified"), "ostree config get").stdout); got != "true" {
		t.Errorf("composefs.unified = %q", got)
	}
	human, doc := h.status(t)
	if !strings.Contains(human, "Storage: unified (enabled)") {
		t.Errorf("status after full:\n%s", human)
	}
	storage := doc["status"].(map[string]any)["storage"].(map[string]any)
	if storage["unified"] != "enabled" || storage["ostreeComposefsBound"] != true {
		t.Errorf("status.storage %v", storage)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")

	// --verbose: each store holds almost nothing alone; what is left are
	// the files of 64 bytes or less, which every store keeps for itself.
	var verbose struct {
		Cfs hoststatus.Stores `json:"cfs"`
	}
	out := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", h.cmdline, "--json", "--verbose"), "cfs-status --verbose").stdout
	if err := json.Unmarshal([]byte(out), &verbose); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]hoststatus.Store{"containers-storage": verbose.Cfs.ContainersStorage, "composefs": verbose.Cfs.Composefs, "ostree": verbose.Cfs.Ostree} {
		o := st.Objects
		if o == nil || o.Bytes == 0 || o.AloneBytes*10 > o.Bytes {
			t.Errorf("cfs-status --verbose: %s %+v: more than a tenth alone", name, o)
			continue
		}
		t.Logf("%s: %d bytes, %d shared, %d alone", name, o.Bytes, o.SharedBytes, o.AloneBytes)
	}
	if human := must(t, sh(t, nil, "cfs-status", "--sysroot", h.sysroot, "--cmdline", h.cmdline, "--verbose"), "cfs-status --verbose").stdout; !regexp.MustCompile(`\d+ layer files, .* shared, .* alone`).MatchString(human) {
		t.Errorf("cfs-status --verbose shows no containers-storage sharing:\n%s", human)
	}

	// Both pinned images are in all three stores, sharing their bytes.
	repo, err := composefs.Open(filepath.Join(h.sysroot, "composefs"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { repo.Close() }()
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(h.sysroot), filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { store.Close() }()
	deployments := map[string]string{} // manifest digest -> deployment dir
	dirs, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/*.0"))
	for _, d := range dirs {
		meta, _ := os.ReadFile(filepath.Join(d, "usr/lib/os-release"))
		for _, img := range imgs {
			if strings.Contains(string(meta), "VERSION_ID="+img.Options.Version+"\n") {
				deployments[img.ManifestDigest.String()] = d
			}
		}
	}
	for _, img := range imgs {
		md := img.ManifestDigest.String()
		if _, err := repo.ResolveTag("localhost/bootc-" + md); err != nil {
			t.Errorf("composefs has no tag for %s: %v", md, err)
		}
		cimg, err := store.FindImage(img.ConfigDigest.Encoded())
		if err != nil {
			t.Errorf("containers-storage: %v", err)
			continue
		}
		dir := deployments[md]
		if dir == "" {
			t.Fatalf("no deployment of %s among %v", md, deployments)
		}
		checkThreeWay(t, repo, store, cimg, dir, true)
	}

	// podman runs the booted image at once: a static binary from a
	// volume prints the image's os-release.
	booted := imgs[1]
	want, _ := os.ReadFile(filepath.Join(deployments[booted.ManifestDigest.String()], "usr/lib/os-release"))
	out = podmanRun(t, cstorage.DefaultGraphRoot(h.sysroot), booted.ConfigDigest.Encoded(), "/usr/lib/os-release")
	if out != string(want) || out == "" {
		t.Errorf("podman run printed %q, want %q", out, want)
	}

	// Again: already unified, nothing to do.
	r = must(t, h.full(t), "bootc-set-unified full again")
	if !strings.Contains(r.stdout, "already enabled") {
		t.Errorf("second full said:\n%s", r.stdout)
	}

	// The upgrade of a unified host takes all three legs: release 3.0 is
	// in containers-storage (podman runs it before any reboot), in
	// composefs and in the synthesized commit it deploys.
	v3, err := testimage.Generate(testimage.Options{Seed: 11, Version: "3.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v3)
	// cfs-gc, run by the upgrade, waits for the repository's exclusive lock.
	repo.Close()
	store.Close()
	r = must(t, sh(t, h.env, "cfs-upgrade", "--sysroot", h.sysroot, "--cmdline", h.cmdline), "cfs-upgrade of a unified host")
	commit := strings.TrimSpace(r.stdout)
	show := must(t, sh(t, nil, "ostree", "show", "--repo="+h.sysroot+"/ostree/repo", "--print-metadata-key=ostree.manifest-digest", commit), "ostree show").stdout
	if !strings.Contains(show, v3.ManifestDigest.String()) {
		t.Errorf("deployed commit is of manifest %s, want %s", show, v3.ManifestDigest)
	}
	if !strings.Contains(r.stderr, "containers-storage:[overlay@") {
		t.Errorf("cfs-upgrade did not import from containers-storage:\n%s", r.stderr)
	}
	if repo, err = composefs.Open(filepath.Join(h.sysroot, "composefs")); err != nil {
		t.Fatal(err)
	}
	if store, err = cstorage.Open(cstorage.DefaultGraphRoot(h.sysroot), filepath.Join(t.TempDir(), "run")); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.ResolveTag("localhost/bootc-" + v3.ManifestDigest.String()); err != nil {
		t.Errorf("composefs has no tag for release 3.0: %v", err)
	}
	cimg, err := store.FindImage(v3.ConfigDigest.Encoded())
	if err != nil {
		t.Fatalf("containers-storage after the upgrade: %v", err)
	}
	dirs, _ = filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy/"+commit+".[0-9]"))
	if len(dirs) != 1 {
		t.Fatalf("deployments of %s: %v", commit, dirs)
	}
	// An upgrade writes each store's small files apart: only full shares
	// them.
	checkThreeWay(t, repo, store, cimg, dirs[0], false)
	want, _ = os.ReadFile(filepath.Join(dirs[0], "usr/lib/os-release"))
	if out := podmanRun(t, cstorage.DefaultGraphRoot(h.sysroot), v3.ConfigDigest.Encoded(), "/usr/lib/os-release"); out != string(want) || !strings.Contains(out, "VERSION_ID=3.0") {
		t.Errorf("podman run of the new image printed %q, want %q", out, want)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck after the upgrade")
}

// checkThreeWay: every file over 64 bytes under the deployment's /usr
// (hard links to the ostree commit's objects) has the very extents of its
// composefs object and of the containers-storage diff file it came from;
// with smallShared, every one of 1 to 64 bytes (which composefs keeps
// inline) has the very block of its containers-storage diff file.
func checkThreeWay(t *testing.T, repo *composefs.Repository, store *cstorage.Store, img *cstorage.Image, deployment string, smallShared bool) {
	t.Helper()
	var diffDirs []string // top layer first
	for i := len(img.Layers) - 1; i >= 0; i-- {
		diffDirs = append(diffDirs, filepath.Join(store.GraphRoot(), "overlay", img.Layers[i].ID, "diff"))
	}
	checked, bad, small, smallBad := 0, 0, 0, 0
	diffOf := func(rel string) string {
		for _, dd := range diffDirs {
			if _, err := os.Lstat(filepath.Join(dd, rel)); err == nil {
				return physical(t, filepath.Join(dd, rel))
			}
		}
		return "missing"
	}
	err := filepath.WalkDir(filepath.Join(deployment, "usr"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, _ := d.Info()
		rel, _ := filepath.Rel(deployment, p)
		if strings.HasPrefix(rel, "usr/etc/") {
			rel = strings.TrimPrefix(rel, "usr/")
		}
		if fi.Size() == 0 {
			return nil
		}
		if fi.Size() <= 64 {
			if !smallShared {
				return nil
			}
			small++
			if obj, diff := physical(t, p), diffOf(rel); obj != diff {
				smallBad++
				if smallBad <= 5 {
					t.Errorf("%s (%d bytes): block ostree %s, containers-storage %s", rel, fi.Size(), obj, diff)
				}
			}
			return nil
		}
		obj := physical(t, p)
		id, err := fsverity.DigestFile(p, repo.Algorithm())
		if err != nil {
			return err
		}
		cobj := physical(t, repo.ObjectPath(id))
		var diff string
		for _, dd := range diffDirs {
			if _, err := os.Lstat(filepath.Join(dd, rel)); err == nil {
				diff = physical(t, filepath.Join(dd, rel))
				break
			}
		}
		checked++
		if obj != cobj || obj != diff {
			bad++
			if bad <= 5 {
				t.Errorf("%s: extents ostree %s, composefs %s, containers-storage %s", rel, obj, cobj, diff)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 || bad > 0 {
		t.Errorf("%s: %d files over 64 bytes, %d not shared by all three stores", deployment, checked, bad)
	}
	if smallShared && (small < 5 || smallBad > 0) {
		t.Errorf("%s: %d files of 1 to 64 bytes, %d not sharing a block with containers-storage", deployment, small, smallBad)
	}
}

// physical is a file's extent map up to its size, as text: equal maps
// mean the same blocks.
func physical(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		return "missing"
	}
	defer f.Close()
	ext, err := reflink.Extents(f)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ext {
		if int64(e.Logical) >= fi.Size() {
			continue // XFS's speculative preallocation past the end of a written file
		}
		fmt.Fprintf(&b, "%d+%d@%d ", e.Logical, e.Length, e.Physical)
	}
	return b.String()
}

var staticCat string

// podmanRun runs image from the store at graph with podman 4.3 (its own
// storage.conf and run root, so nothing of the host's is touched) and
// returns what a static cat of file printed.
func podmanRun(t *testing.T, graph, image, file string) string {
	t.Helper()
	podman := testfs.RequireTool(t, "podman")
	testfs.RequireTool(t, "runc")
	if staticCat == "" {
		src := filepath.Join(binDir, "cat.go")
		os.WriteFile(src, []byte("package main\n\nimport \"os\"\n\nfunc main() {\n\tb, err := os.ReadFile(os.Args[1])\n\tif err != nil {\n\t\tos.Exit(1)\n\t}\n\tos.Stdout.Write(b)\n}\n"), 0o644)
		out := filepath.Join(binDir, "static", "cat")
		cmd := exec.Command("go", "build", "-o", out, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building a static cat: %v\n%s", err, msg)
		}
		staticCat = out
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "storage.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n[storage.options]\nskip_mount_home = \"true\"\n[storage.options.overlay]\nmountopt = \"nodev\"\n", graph, filepath.Join(dir, "run"))), 0o644)
	env := []string{"CONTAINERS_STORAGE_CONF=" + conf, "HOME=" + dir, "TMPDIR=" + dir, "XDG_RUNTIME_DIR=" + dir}
	base := []string{"--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	t.Cleanup(func() {
		sh(t, env, podman, append(base, "system", "reset", "--force")...)
		exec.Command("umount", filepath.Join(graph, "overlay")).Run()
	})
	r := sh(t, env, podman, append(base, "run", "--rm", "--runtime", "runc", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-v", filepath.Dir(staticCat)+":/cfs-test:ro", image, "/cfs-test/cat", file)...)
	if r.code != 0 {
		t.Fatalf("podman run: exit %d\n%s", r.code, r.stderr)
	}
	return r.stdout
}

func TestSetUnifiedFullExt4(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	h, imgs := classicHost(t, "ext4")
	r := h.full(t)
	if r.code != 5 || !strings.Contains(r.stderr, "cannot share extents") || !strings.Contains(r.stderr, "--enabled-with-copy") {
		t.Errorf("full on ext4: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(cstorage.DefaultGraphRoot(h.sysroot)); !os.IsNotExist(err) {
		t.Errorf("full on ext4 wrote containers-storage before refusing (%v)", err)
	}
	h.noFlag(t)
	r = must(t, h.full(t, "--enabled-with-copy"), "full --enabled-with-copy")
	// One total of its own, and nothing else says "Copied". On a classic
	// host the images come from the registry into containers-storage
	// (skopeo, not a copy of anything on the host), then each file body
	// over the inline limit is copied once into composefs: the total is
	// exactly the distinct bodies of more than 64 bytes in the two images'
	// layers, computed here from the layer tars themselves.
	copied := regexp.MustCompile(`(?m)^Copied ([0-9]+) bytes \(([0-9]+) objects\) where reflinks were refused\.$`).FindAllStringSubmatch(r.stdout, -1)
	wantBytes, wantObjects := distinctBodies(t, imgs, dedupe.InlineMax)
	if len(copied) != 1 {
		t.Errorf("full --enabled-with-copy did not report the bytes copied as one total line:\n%s", r.stdout)
	} else if gotBytes, gotObjects := atoi(t, copied[0][1]), atoi(t, copied[0][2]); gotBytes != wantBytes || gotObjects != wantObjects {
		t.Errorf("full --enabled-with-copy reported %d bytes (%d objects) copied, the images' distinct file bodies over %d bytes are %d bytes (%d objects)",
			gotBytes, gotObjects, dedupe.InlineMax, wantBytes, wantObjects)
	} else {
		// What else the repository keeps as objects is each image's
		// manifest and config (the external objects of its oci-manifest
		// and oci-config streams), written, not copied: the file objects
		// are the copies and those, to the byte.
		held := repoFileObjectBytes(t, filepath.Join(h.sysroot, "composefs"))
		var meta int64
		for _, img := range imgs {
			meta += int64(len(img.Manifest) + len(img.Config))
		}
		if held != gotBytes+meta {
			t.Errorf("the composefs repository holds %d bytes of objects, want the %d copied plus %d of manifests and configs", held, gotBytes, meta)
		}
	}
	t.Logf("full --enabled-with-copy on ext4:\n%s%s", r.stdout, r.stderr)
	if data, err := os.ReadFile(filepath.Join(h.sysroot, "composefs/bootc.json")); err != nil || string(data) != bootcJSON("enabled-with-copy") {
		t.Errorf("bootc.json %q (%v)", data, err)
	}
	human, _ := h.status(t)
	if !strings.Contains(human, "Storage: unified (enabled-with-copy)") {
		t.Errorf("status:\n%s", human)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
}

// TestSetUnifiedFullFaults: a corrupt blob, then the registry gone, then
// SIGKILL in the middle: never a flag, and a re-run completes.
func TestSetUnifiedFullFaults(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	h, imgs := classicHost(t, "xfs")

	top := imgs[1].Layers[len(imgs[1].Layers)-1]
	h.reg.Inject(testregistry.Fault{Kind: testregistry.CorruptByte, Target: top.Digest, Offset: top.Size / 2})
	r := h.full(t)
	if r.code != 1 || !strings.Contains(r.stderr, "stage fetch: booted image "+h.imageRef+" ("+imgs[1].ManifestDigest.String()+")") {
		t.Errorf("corrupt blob: exit %d\n%s", r.code, r.stderr)
	}
	h.noFlag(t)
	h.reg.ClearFaults()

	// SIGKILL of the whole run once the import stage has begun.
	h.killDuring(t, "import: ", "", 0, "")
	h.noFlag(t)

	// The registry goes away: the images are in containers-storage now,
	// so the re-run needs it no more.
	h.reg.Close()
	r = must(t, h.full(t), "bootc-set-unified full after the faults")
	if !strings.Contains(r.stdout, "Unified storage enabled for") {
		t.Errorf("full said:\n%s", r.stdout)
	}
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
}

// killDuring runs full and SIGKILLs its whole process group delay after
// its stderr first says marker and, if tool is set, a process of that
// name runs in the group. pathDir, if set, comes first in PATH (a tool
// that stops to say where the run is).
func (h *hostFixture) killDuring(t *testing.T, marker, tool string, delay time.Duration, pathDir string) {
	t.Helper()
	path := binDir + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"
	if pathDir != "" {
		path = pathDir + ":" + path
	}
	cmd := exec.Command(filepath.Join(binDir, "bootc-set-unified"), "full", "--sysroot", h.sysroot, "--cmdline", h.cmdline)
	cmd.Env = append(append(os.Environ(), "PATH="+path), h.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	buf := make([]byte, 4096)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(seen.String(), marker) && time.Now().Before(deadline) {
		n, err := stderr.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			break
		}
	}
	ran := tool == ""
	for end := time.Now().Add(time.Minute); !ran && time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		ran = inGroup(cmd.Process.Pid, tool)
	}
	time.Sleep(delay)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	// Every process of the group gone (they hold the test filesystem).
	for end := time.Now().Add(10 * time.Second); syscall.Kill(-cmd.Process.Pid, 0) == nil && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(seen.String(), marker) {
		t.Fatalf("full never said %q:\n%s", marker, seen.String())
	}
	if !ran {
		t.Fatalf("%s never ran after full said %q", tool, marker)
	}
}

// inGroup tells whether a process named name runs in process group pgid.
func inGroup(pgid int, name string) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, not ")".
		i := bytes.LastIndexByte(data, ')')
		j := bytes.IndexByte(data, '(')
		if i < 0 || j < 0 || string(data[j+1:i]) != name {
			continue
		}
		if f := strings.Fields(string(data[i+1:])); len(f) > 2 && f[2] == fmt.Sprint(pgid) {
			return true
		}
	}
	return false
}

// noHalfImage: what a killed run leaves names no image it did not finish.
// Every composefs tag resolves to an image whose streams and objects are
// all there, and every containers-storage image reads back whole from
// its tar-split, each file body checked against the CRC recorded there.
func (h *hostFixture) noHalfImage(t *testing.T) {
	t.Helper()
	refs, _ := filepath.Glob(filepath.Join(h.sysroot, "composefs/streams/refs/oci/*"))
	for _, ref := range refs {
		tag := strings.ReplaceAll(filepath.Base(ref), "%2F", "/")
		r := sh(t, nil, "cfs-pull", "--sysroot", h.sysroot, "--quiet", "--from-repo", tag)
		if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
			t.Errorf("composefs tag %s names an incomplete image: exit %d\n%s", tag, r.code, r.stderr)
		}
	}
	graph := cstorage.DefaultGraphRoot(h.sysroot)
	data, err := os.ReadFile(filepath.Join(graph, "overlay-images/images.json"))
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var images []struct{ ID string }
	if err := json.Unmarshal(data, &images); err != nil {
		t.Fatalf("overlay-images/images.json: %v", err)
	}
	store, err := cstorage.Open(graph, filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, im := range images {
		img, err := store.FindImage(im.ID)
		if err != nil {
			t.Errorf("containers-storage records image %s but it cannot be read: %v", im.ID, err)
			continue
		}
		for i := range img.Layers {
			lt, err := store.OpenLayer(img, i)
			if err == nil {
				_, err = io.Copy(io.Discard, lt)
				lt.Close()
			}
			if err != nil {
				t.Errorf("containers-storage image %s, layer %d is incomplete: %v", im.ID, i, err)
			}
		}
	}
}

// TestSetUnifiedFullKillEachStage: SIGKILL in each stage of full leaves no
// flag and no half image named anywhere, and a re-run completes. Each kill
// waits for the stage's tool to run. The ostree and the flag stage share
// a host: the re-run after the kill in the ostree stage completes it and
// is killed in turn in the flag stage, stopped by a sync that never
// returns (its bootc.json written but not yet renamed into place); then
// full completes.
func TestSetUnifiedFullKillEachStage(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	type kill struct {
		marker, tool string
		delay        time.Duration
		stopSync     bool
	}
	for _, tc := range []struct {
		name  string
		kills []kill
	}{
		{"fetch", []kill{{"fetch: booted image", "skopeo", 150 * time.Millisecond, false}}},
		{"import", []kill{{"import: booted image", "cfs-pull", 150 * time.Millisecond, false}}},
		// While cfs-dedupe remaps the rollback commit's objects, then
		// in the flag stage.
		{"ostree-flag", []kill{{"ostree: rollback image", "cfs-dedupe", 0, false}, {"flag: sync", "", 0, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := classicHost(t, "xfs")
			for _, k := range tc.kills {
				shim := ""
				if k.stopSync {
					shim = t.TempDir()
					if err := os.WriteFile(filepath.Join(shim, "sync"), []byte("#!/bin/sh\necho 'flag: sync' >&2\nexec sleep 60\n"), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				h.killDuring(t, k.marker, k.tool, k.delay, shim)
				h.noFlag(t)
				h.noHalfImage(t)
			}
			r := must(t, h.full(t), "bootc-set-unified full after SIGKILL in stage "+tc.name)
			if !strings.Contains(r.stdout, "Unified storage enabled for") {
				t.Errorf("full said:\n%s", r.stdout)
			}
			if data, err := os.ReadFile(filepath.Join(h.sysroot, "composefs/bootc.json")); err != nil || string(data) != bootcJSON("enabled") {
				t.Errorf("bootc.json %q (%v)", data, err)
			}
			h.noHalfImage(t)
			must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
		})
	}
}

// TestSetUnifiedFullRegistryGone: an image only the registry has, and the
// registry unreachable: the message names the stage and the image.
func TestSetUnifiedFullRegistryGone(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	h, imgs := classicHost(t, "xfs")
	h.reg.Close()
	r := h.full(t)
	if r.code != 1 || !strings.Contains(r.stderr, "stage fetch: rollback image "+h.imageRef+" ("+imgs[0].ManifestDigest.String()+")") {
		t.Errorf("registry gone: exit %d\n%s", r.code, r.stderr)
	}
	h.noFlag(t)
}

// TestSetUnifiedFullComposefsNativeHost: a composefs-native host (bootc's
// layout, lib/sysroot/sysroottest) with the booted and the rollback image
// in its composefs repository only; full backfills containers-storage from
// composefs with the registry gone, sharing every file.
func TestSetUnifiedFullComposefsNativeHost(t *testing.T) {
	testfs.RequirePrivileged(t)
	testfs.RequireTool(t, "jq")
	fsys := testfs.XFS(t, 0)
	root := fsys.Path("sysroot")
	os.MkdirAll(root, 0o755)
	reg := testregistry.New(t)
	conf := filepath.Join(t.TempDir(), "registries.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", reg.Host)), 0o644)
	env := []string{"CONTAINERS_REGISTRIES_CONF=" + conf}
	var deps []sysroottest.Deployment
	var imgs []*testimage.Image
	for _, v := range []string{"1.0", "2.0"} {
		img, err := testimage.Generate(testimage.Options{Seed: 11, Version: v})
		if err != nil {
			t.Fatal(err)
		}
		reg.Push(t, "os", "stable", img)
		list := must(t, sh(t, env, "cfs-pull", "--repo", filepath.Join(root, "composefs"), "--quiet", "docker://"+reg.Host+"/os:stable"), "cfs-pull "+v).stdout
		var rec struct {
			Stores struct {
				Composefs struct{ Image string } `json:"composefs"`
			} `json:"stores"`
		}
		if err := json.Unmarshal([]byte(list[:strings.IndexByte(list, '\n')]), &rec); err != nil || rec.Stores.Composefs.Image == "" {
			t.Fatalf("object list of %s: %v", v, err)
		}
		deps = append(deps, sysroottest.Deployment{Image: sysroottest.Image{
			Ref: "ostree-unverified-image:docker://" + reg.Host + "/os:stable", Architecture: "amd64",
			RawManifest: img.Manifest, RawConfig: img.Config, ImageVerity: rec.Stores.Composefs.Image,
		}})
		imgs = append(imgs, img)
	}
	// The newest first in boot order: 2.0 booted, 1.0 the rollback.
	deps[0], deps[1] = deps[1], deps[0]
	host := sysroottest.Composefs(t, root, deps, 0, sysroottest.BLS, false)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmdline, []byte(host.Cmdline+"\n"), 0o644)
	reg.Close()

	r := must(t, sh(t, env, "bootc-set-unified", "full", "--sysroot", root, "--cmdline", cmdline), "bootc-set-unified full (composefs-native)")
	if strings.TrimSpace(r.stdout) != "Unified storage enabled for "+reg.Host+"/os:stable." {
		t.Errorf("full said:\n%s", r.stdout)
	}
	if data, err := os.ReadFile(filepath.Join(root, "composefs/bootc.json")); err != nil || string(data) != bootcJSON("enabled") {
		t.Errorf("bootc.json %q (%v)", data, err)
	}
	human := must(t, sh(t, nil, "cfs-status", "--sysroot", root, "--cmdline", cmdline), "cfs-status").stdout
	if !strings.Contains(human, "Storage: unified (enabled)") || !strings.Contains(human, "Rollback image") {
		t.Errorf("status after full:\n%s", human)
	}
	repo, err := composefs.Open(filepath.Join(root, "composefs"))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(root), filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, img := range imgs {
		cimg, err := store.FindImage(img.ConfigDigest.Encoded())
		if err != nil {
			t.Errorf("containers-storage: %v", err)
			continue
		}
		// Every diff file over 64 bytes has the extents of its object.
		checked := 0
		for _, l := range cimg.Layers {
			diff := filepath.Join(store.GraphRoot(), "overlay", l.ID, "diff")
			filepath.WalkDir(diff, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				if fi, _ := d.Info(); fi.Size() <= 64 {
					return nil
				}
				id, err := fsverity.DigestFile(p, repo.Algorithm())
				if err != nil {
					return err
				}
				checked++
				if a, b := physical(t, p), physical(t, repo.ObjectPath(id)); a != b {
					t.Errorf("%s: extents %s, its composefs object %s", p, a, b)
				}
				return nil
			})
		}
		if checked < 10 {
			t.Errorf("image %s: only %d diff files over 64 bytes", img.ConfigDigest, checked)
		}
	}
}

// TestSetUnifiedUnitsUnderSystemd runs full the way a host does: inside a
// real systemd (the harness of TestUpgradeUnitUnderSystemd), where
// bootc-set-unified starts cfs-unified-flag@enabled.service and the chain
// it requires. A failing middle stage (import) leaves no flag; once it is
// fixed, starting the chain again completes it.
func TestSetUnifiedUnitsUnderSystemd(t *testing.T) {
	nspawn := testfs.RequireTool(t, "systemd-nspawn")
	nsenter := testfs.RequireTool(t, "nsenter")
	testfs.RequireTool(t, "skopeo")
	h, _ := classicHost(t, "xfs")

	const prefix = "/run/cfs-test"
	files := t.TempDir()
	conf := strings.TrimPrefix(h.env[0], "CONTAINERS_REGISTRIES_CONF=")
	copyFile(t, conf, filepath.Join(files, "registries.conf"))
	copyFile(t, h.cmdline, filepath.Join(files, "cmdline"))
	units := t.TempDir()
	paths, _ := filepath.Glob("../units/cfs-unified-*@.service")
	if len(paths) != 4 {
		t.Fatalf("unified units: %v", paths)
	}
	env := fmt.Sprintf("PATH=%[1]s/bin:/usr/sbin:/usr/bin:/sbin:/bin CONTAINERS_REGISTRIES_CONF=%[1]s/files/registries.conf", prefix)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("=/usr/bin/"), []byte("="+prefix+"/bin/"))
		writeFile(t, filepath.Join(units, filepath.Base(p)), string(data))
		writeFile(t, filepath.Join(units, filepath.Base(p)+".d", "test.conf"), "[Service]\nEnvironment="+env+"\n")
	}
	c := bootContainer(t, nspawn, nsenter,
		"--bind="+h.sysroot+":/sysroot",
		"--bind-ro="+binDir+":"+prefix+"/bin",
		"--bind-ro="+files+":"+prefix+"/files",
		"--bind-ro="+units+":/etc/systemd/system",
		"--bind-ro=/etc/containers")
	full := func() run {
		return c.run(t, append([]string{"env"}, append(strings.Fields(env), prefix+"/bin/bootc-set-unified", "full", "--cmdline", prefix+"/files/cmdline")...)...)
	}
	journal := func() string {
		return c.run(t, "journalctl", "--no-pager", "-o", "cat", "-u", "cfs-unified-*").stdout
	}
	result := func(unit string) string {
		return strings.TrimSpace(c.run(t, "systemctl", "show", "-p", "Result", "-p", "ActiveState", unit).stdout)
	}

	// The import stage fails: fetch has run, the flag unit never does.
	must(t, c.run(t, "sh", "-c", "mkdir -p /run/systemd/system/cfs-unified-import@.service.d && printf '[Service]\\nExecStartPre=/bin/false\\n' > /run/systemd/system/cfs-unified-import@.service.d/fail.conf && systemctl daemon-reload"), "a failing import stage")
	r := full()
	if r.code != 1 || !strings.Contains(r.stderr, "units failed") {
		t.Errorf("full with a failing stage: exit %d\n%s\njournal:\n%s", r.code, r.stderr, journal())
	}
	if got := result("cfs-unified-fetch@enabled.service"); !strings.Contains(got, "Result=success") {
		t.Errorf("fetch stage: %s", got)
	}
	if got := result("cfs-unified-import@enabled.service"); !strings.Contains(got, "ActiveState=failed") {
		t.Errorf("import stage: %s", got)
	}
	if got := result("cfs-unified-flag@enabled.service"); strings.Contains(got, "ActiveState=active") || strings.Contains(got, "Result=success") && strings.Contains(journal(), "stage flag") {
		t.Errorf("flag stage: %s", got)
	}
	h.noFlag(t)

	// Fixed: the same command starts the chain again and it completes.
	must(t, c.run(t, "sh", "-c", "rm -r /run/systemd/system/cfs-unified-import@.service.d && systemctl daemon-reload && systemctl reset-failed"), "fixing the import stage")
	r = full()
	if r.code != 0 || !strings.Contains(r.stdout, "Unified storage enabled for "+h.imageRef+".") {
		t.Fatalf("full after the fix: exit %d\n%s%s\njournal:\n%s", r.code, r.stdout, r.stderr, journal())
	}
	if got := result("cfs-unified-flag@enabled.service"); !strings.Contains(got, "Result=success") {
		t.Errorf("flag stage: %s", got)
	}
	if data, err := os.ReadFile(filepath.Join(h.sysroot, "composefs/bootc.json")); err != nil || string(data) != bootcJSON("enabled") {
		t.Errorf("bootc.json %q (%v)", data, err)
	}
	if human, _ := h.status(t); !strings.Contains(human, "Storage: unified (enabled)") {
		t.Errorf("status:\n%s", human)
	}
}

// BenchmarkSetUnifiedFull measures the disk a classic ostree host uses
// before (one copy of its two images, in ostree) and after full (the same
// images in containers-storage and composefs too): the promise is at most
// 2% more. The images are Scale 30, about 100 MiB each, sharing two of
// their three layers as two releases of one OS do. It prints both
// figures, the growth statfs sees and the bytes of one copy of the
// images (their distinct file bodies in whole blocks), and where the
// growth is, store by store (CFS_BENCH_DISK=1 prints the whole map).
//
// On loop XFS (mkfs defaults: 4 KiB blocks, 512-byte inodes) the growth
// is about 8.4 MB, 1.040x, and none of it is unshared file data or
// preallocation: no store maps a block past a file's end once synced,
// every body over 64 bytes is one set of extents, and containers-storage's
// files of 64 bytes or less share the blocks of ostree's objects (those
// of overwritten files aside). It is, largest first: the inodes of the
// two new stores' files (about 7,900: 4.0 MB), the two EROFS images
// (2.2 MB), directory blocks (1.4 MB; the 256 objects/XX directories of
// composefs hold names too long to live in the inode, as ostree's do),
// splitstreams and containers-storage's tar-split and metadata (0.7 MB),
// and composefs objects of files no deployment holds (0.2 MB,
// overwritten in a later layer). With images of about 43 KB a file, an
// inode per file per store is 1.2% alone, so the 1.02x aimed at is out
// of reach on XFS for images of this shape whatever the writers do.
func BenchmarkSetUnifiedFull(b *testing.B) {
	for i := 0; i < b.N; i++ {
		h, imgs := classicHostScale(b, "xfs", 30)
		before := measureDisk(b, h.sysroot)
		start := time.Now()
		must(b, h.full(b), "bootc-set-unified full")
		elapsed := time.Since(start)
		after := measureDisk(b, h.sysroot)
		one, files := imageBytes(imgs, before.blockSize)
		ratio := float64(after.used) / float64(before.used)
		growth := after.used - before.used
		b.ReportMetric(ratio, "used-after/before")
		b.ReportMetric(float64(growth)/float64(one), "growth/image-bytes")
		b.Logf("statfs used: %d bytes with one copy (ostree), %d after full in three stores: %.4fx (+%d bytes); one copy of the images is %d bytes (%d distinct files): growth %.2f%% of it; full took %v",
			before.used, after.used, ratio, growth, one, files, 100*float64(growth)/float64(one), elapsed)
		b.Logf("where the growth is:\n%s", after.sub(before))
		if os.Getenv("CFS_BENCH_DISK") != "" {
			b.Logf("before:\n%s\nafter:\n%s", before.report(), after.report())
		}
		if ratio > 1.02 {
			b.Logf("NOT MET: full grew the disk used %.4fx, more than the 1.02x aimed at", ratio)
		}
	}
}

// usedBytes is what statfs says the filesystem holding dir uses, after a
// syncfs so that delayed allocation is counted.
func usedBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	f, err := os.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		tb.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		tb.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// repoFileObjectBytes is the size of every object in a composefs
// repository that holds a file's body: not an EROFS image or a stream
// (images/ and streams/ link to those).
func repoFileObjectBytes(t *testing.T, repo string) int64 {
	t.Helper()
	named := map[string]bool{}
	for _, dir := range []string{"images", "streams"} {
		entries, err := os.ReadDir(filepath.Join(repo, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if p, err := filepath.EvalSymlinks(filepath.Join(repo, dir, e.Name())); err == nil && e.Type()&fs.ModeSymlink != 0 {
				named[p] = true
			}
		}
	}
	var n int64
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || named[p] {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// fill takes all the free space of the filesystem that holds dir but
// leave bytes (given back once every block that can be written is
// taken); the returned func frees it again.
func fill(t *testing.T, dir string, leave int64) (free func()) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	bulk, rest := filepath.Join(dir, "filler"), filepath.Join(dir, "filler.rest")
	free = func() {
		for _, p := range []string{bulk, rest} {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
	f, err := os.Create(bulk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(st.Bavail)*st.Bsize - 4<<20
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		free()
		t.Fatalf("fallocate %d bytes: %v", size, err)
	}
	// The last blocks one write at a time, until the filesystem says no.
	g, err := os.Create(rest)
	if err != nil {
		free()
		t.Fatal(err)
	}
	defer g.Close()
	block := make([]byte, 4096)
	for {
		if _, err = g.Write(block); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		free()
		t.Fatalf("filling %s: %v", dir, err)
	}
	if fi, err := g.Stat(); err != nil || g.Truncate(max(fi.Size()-leave, 0)) != nil {
		free()
		t.Fatalf("giving back %d bytes in %s: %v", leave, dir, err)
	}
	return free
}

// TestSetUnifiedFullENOSPC: the filesystem full during each stage. On XFS
// one host goes through the fetch stage (the registry copy into
// containers-storage) with the filesystem full, then, once the fetch and
// import stages completed, through the ostree and flag stages each with
// the filesystem full (enospcLateStages); on ext4 the import stage (into
// composefs, copying) runs out. A stage that fails exits non-zero naming
// itself, leaves no flag and no half image, and once space is freed the
// re-run completes.
func TestSetUnifiedFullENOSPC(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	for _, stage := range []string{"fetch", "import"} {
		name := stage
		if stage == "fetch" {
			name = "fetch-ostree-flag"
		}
		t.Run(name, func(t *testing.T) {
			var h *hostFixture
			var r run
			var mode []string
			if stage == "fetch" {
				h, _ = classicHost(t, "xfs")
				free := fill(t, h.sysroot, 256<<10)
				r = h.full(t)
				free()
			} else {
				// On ext4 the import copies every body: the space runs
				// out in cfs-pull's writes, not in an inode for the
				// reflink probe (XFS wants room for a whole inode chunk).
				h, _ = classicHost(t, "ext4")
				mode = []string{"--enabled-with-copy"}
				stageArgs := []string{"--mode", "enabled-with-copy", "--sysroot", h.sysroot, "--cmdline", h.cmdline}
				must(t, sh(t, h.env, "bootc-set-unified", append([]string{"stage", "fetch"}, stageArgs...)...), "stage fetch")
				free := fill(t, h.sysroot, 1<<20)
				r = sh(t, h.env, "bootc-set-unified", append([]string{"stage", "import"}, stageArgs...)...)
				free()
			}
			if r.code == 0 || !strings.Contains(r.stderr, "stage "+stage+": ") || !strings.Contains(r.stderr, "no space left on device") {
				t.Errorf("%s on a full filesystem: exit %d\n%s", stage, r.code, r.stderr)
			}
			h.noFlag(t)
			h.noHalfImage(t)
			if stage == "fetch" {
				// The same host runs out of space in the later stages.
				enospcLateStages(t, h)
				return
			}
			r = must(t, h.full(t, mode...), "bootc-set-unified full once space is freed")
			if !strings.Contains(r.stdout, "Unified storage enabled for") {
				t.Errorf("full said:\n%s", r.stdout)
			}
			h.noHalfImage(t)
			must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
		})
	}
}

// enospcLateStages: the fetch and import stages run again and complete;
// then the filesystem is full during the ostree stage and then during the
// flag stage, each run as its unit runs it.
//
// The ostree stage writes nothing: cfs-dedupe only asks the kernel to
// remap the ostree objects onto the composefs objects' extents. On a
// filesystem where not even a one-byte file can be created, XFS's
// FIDEDUPERANGE still succeeds (its few btree blocks come from the
// blocks no write can take and the refcount btree's per-AG reservation)
// and frees the duplicate blocks, so the stage must complete there: a
// probe file written by the stage (as it once did) failed it instead.
//
// The flag stage writes bootc.json: a non-zero exit naming the stage, no
// flag and no temporary flag file, no half image, ostree fsck clean, and
// once space is freed full completes.
func enospcLateStages(t *testing.T, h *hostFixture) {
	t.Helper()
	stage := func(name string) run {
		return sh(t, h.env, "bootc-set-unified", "stage", name, "--mode", "enabled", "--sysroot", h.sysroot, "--cmdline", h.cmdline)
	}
	clean := func(after string) {
		t.Helper()
		h.noFlag(t)
		if tmp, _ := filepath.Glob(filepath.Join(h.sysroot, "composefs/.bootc.json.*")); len(tmp) != 0 {
			t.Errorf("%s left %v", after, tmp)
		}
		h.noHalfImage(t)
		must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck after "+after)
	}
	must(t, stage("fetch"), "stage fetch")
	must(t, stage("import"), "stage import")

	free := fill(t, h.sysroot, 0)
	if err := os.WriteFile(filepath.Join(h.sysroot, "probe"), []byte("x"), 0o644); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the filesystem is not full: writing a byte gave %v", err)
	}
	os.Remove(filepath.Join(h.sysroot, "probe"))
	r := stage("ostree")
	free()
	if r.code != 0 {
		t.Errorf("stage ostree on a full filesystem: exit %d\n%s", r.code, r.stderr)
	}
	commits := regexp.MustCompile(`ostree: \S+ image .*, commit ([0-9a-f]{64}): sharing`).FindAllStringSubmatch(r.stderr, -1)
	if len(commits) != 2 {
		t.Fatalf("stage ostree named %d classic commits:\n%s", len(commits), r.stderr)
	}
	sharedAll := func(when string) {
		t.Helper()
		// Every object over 64 bytes shares its composefs object's
		// extents already: none left to do and none missing.
		for _, c := range commits {
			var st dedupe.Stats
			out := must(t, sh(t, nil, "cfs-dedupe", "--sysroot", h.sysroot, "--json", c[1]), "cfs-dedupe "+c[1]).stdout
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("cfs-dedupe --json: %v\n%s", err, out)
			}
			if st.Deduped != 0 || st.Missing != 0 || st.Shared == 0 || st.Shared+st.Small != st.Objects {
				t.Errorf("commit %s %s: %+v", c[1], when, st)
			}
		}
	}
	sharedAll("after the ostree stage on a full filesystem")
	clean("the ostree stage on a full filesystem")

	free = fill(t, h.sysroot, 0)
	r = stage("flag")
	free()
	if r.code == 0 || !strings.Contains(r.stderr, "stage flag: ") || !strings.Contains(strings.ToLower(r.stderr), "no space left on device") {
		t.Errorf("stage flag on a full filesystem: exit %d\n%s", r.code, r.stderr)
	}
	clean("ENOSPC in the flag stage")

	r = must(t, h.full(t), "bootc-set-unified full once space is freed")
	if !strings.Contains(r.stdout, "Unified storage enabled for") {
		t.Errorf("full said:\n%s", r.stdout)
	}
	if data, err := os.ReadFile(filepath.Join(h.sysroot, "composefs/bootc.json")); err != nil || string(data) != bootcJSON("enabled") {
		t.Errorf("bootc.json %q (%v)", data, err)
	}
	h.noHalfImage(t)
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
	sharedAll("after full")
}

// TestSetUnifiedFullStagedOstree: a classic host with an update staged by
// ostree itself (ostree admin deploy --stage: checked out, announced in
// /run/ostree/staged-deployment, no boot entry until
// ostree-finalize-staged runs at shutdown): full backfills the staged
// image too, in containers-storage and composefs, and shares its
// commit's files.
func TestSetUnifiedFullStagedOstree(t *testing.T) {
	testfs.RequireTool(t, "skopeo")
	h, imgs := classicHost(t, "xfs")
	v3, err := testimage.Generate(testimage.Options{Seed: 11, Version: "3.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v3)
	commit := h.commitClassic(t, v3)
	// The pipeline that made the tree filled a composefs repository again:
	// a classic host has none.
	if err := os.RemoveAll(filepath.Join(h.sysroot, "composefs")); err != nil {
		t.Fatal(err)
	}
	runDir, status := h.stageClassic(t, commit)
	if !regexp.MustCompile(`(?m)^  default ` + commit + `\.[0-9]+ \(staged\)$`).MatchString(status) {
		t.Fatalf("ostree admin status shows no staged deployment of %s:\n%s", commit, status)
	}
	entries, _ := filepath.Glob(filepath.Join(h.sysroot, "boot/loader/entries/ostree-*.conf"))
	for _, e := range entries {
		if data, _ := os.ReadFile(e); strings.Contains(string(data), "3.0") {
			t.Fatalf("the staged deployment has a boot entry already: %s", e)
		}
	}

	r := must(t, h.full(t, "--run-dir", runDir), "bootc-set-unified full with a staged deployment")
	if !strings.Contains(r.stderr, "fetch: staged image "+h.imageRef+" ("+v3.ManifestDigest.String()+"): from docker://") ||
		!strings.Contains(r.stderr, "fetch: booted image "+h.imageRef+" ("+imgs[1].ManifestDigest.String()+")") ||
		!strings.Contains(r.stderr, "ostree: staged image "+h.imageRef+" ("+v3.ManifestDigest.String()+"), commit "+commit) {
		t.Errorf("full did not backfill the staged image:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(h.sysroot, "composefs/streams/refs/oci/localhost%2Fbootc-"+v3.ManifestDigest.String())); err != nil {
		t.Errorf("the staged image is not tagged in composefs: %v", err)
	}
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(h.sysroot), filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.FindImage("localhost/os@" + v3.ManifestDigest.String()); err != nil {
		if _, err2 := store.FindImage(h.imageRef + "@" + v3.ManifestDigest.String()); err2 != nil {
			t.Errorf("the staged image is not in containers-storage: %v", err2)
		}
	}
	h.noHalfImage(t)
	must(t, sh(t, nil, "ostree", "fsck", "--repo="+h.sysroot+"/ostree/repo"), "ostree fsck")
}

// stageClassic stages commit with ostree admin deploy --stage, as on the
// running host, and returns the run directory that holds ostree's
// staged-deployment file and what ostree admin status said afterwards.
//
// ostree stages only on a booted system: it must find its booted
// deployment, which it does by /run/ostree-booted existing and the device
// and inode of / being those of a deployment directory (and of the
// sysroot it opens, / by default). So ostree runs here the way it runs on
// the host: in a mount namespace of its own, chrooted into the booted
// deployment, with the physical root on /sysroot, /ostree pointing into
// it, /boot bound from it, and a fresh /run. The deployment lacks the
// few root entries every bootc image carries for that (/sysroot,
// /ostree, /boot, /run, /proc, /dev, /lib64: the test image is not
// bootable), so they are added, the immutable bit lifted meanwhile; its
// /usr is the host's, for the ostree binary. The file ostree writes is
// the real marker: a GVariant a{sv} whose "target" is the staged
// deployment. ostree 2022.7 writes it without starting
// ostree-finalize-staged.service; later ostree (2025.3 on) also runs
// systemctl start ostree-finalize-staged.service, which needs the host's
// systemd, so there this setup would need a booted container.
func (h *hostFixture) stageClassic(t *testing.T, commit string) (runDir, status string) {
	t.Helper()
	testfs.RequireTool(t, "unshare")
	testfs.RequireTool(t, "chattr")
	arg := regexp.MustCompile(`(?:^|\s)ostree=(\S+)`).FindStringSubmatch(readString(t, h.cmdline))
	if arg == nil {
		t.Fatalf("no ostree= in %s", h.cmdline)
	}
	dep, err := filepath.EvalSymlinks(filepath.Join(h.sysroot, arg[1]))
	if err != nil {
		t.Fatalf("the booted deployment: %v", err)
	}
	must(t, sh(t, nil, "chattr", "-i", dep), "chattr -i")
	for _, d := range []string{"sysroot", "boot", "run", "proc", "dev"} {
		if err := os.Mkdir(filepath.Join(dep, d), 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"ostree": "sysroot/ostree", "lib64": "usr/lib64"} {
		if err := os.Symlink(target, filepath.Join(dep, name)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	must(t, sh(t, nil, "chattr", "+i", dep), "chattr +i")
	runDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(runDir, "ostree-booted"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(t, h.originFile(t), filepath.Join(runDir, "origin"))
	script := `set -e
mount --bind "$SYSROOT" "$DEP/sysroot"
mount --bind "$SYSROOT/boot" "$DEP/boot"
mount --bind "$RUN" "$DEP/run"
mount --rbind /dev "$DEP/dev"
mount -t proc proc "$DEP/proc"
mount --bind /usr "$DEP/usr"
chroot "$DEP" /usr/bin/ostree admin deploy --stage --os=default --origin-file=/run/origin "$COMMIT" >&2
chroot "$DEP" /usr/bin/ostree admin status
`
	// The mounts live and die with the namespace; a PID namespace of its
	// own lets ostree read /proc/1/ns/mnt, which it compares with its own
	// to see whether it runs in a mount namespace of its own.
	r := must(t, sh(t, []string{"SYSROOT=" + h.sysroot, "DEP=" + dep, "RUN=" + runDir, "COMMIT=" + commit},
		"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "sh", "-c", script), "ostree admin deploy --stage in the booted deployment")
	os.Remove(filepath.Join(runDir, "origin"))
	if _, err := os.Stat(filepath.Join(runDir, "ostree/staged-deployment")); err != nil {
		t.Fatalf("ostree staged, but: %v", err)
	}
	return runDir, r.stdout
}

func readString(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// distinctBodies sums the sizes of the distinct regular file bodies of
// more than inline bytes in every layer of imgs, read from the layer
// tars: what an import into composefs writes as objects.
func distinctBodies(t *testing.T, imgs []*testimage.Image, inline int64) (size, objects int64) {
	t.Helper()
	seen := map[[sha256.Size]byte]bool{}
	for _, img := range imgs {
		for _, l := range img.Layers {
			rc := l.OpenTar()
			tr := tar.NewReader(rc)
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					rc.Close()
					t.Fatalf("layer %s: %v", l.DiffID, err)
				}
				if hdr.Typeflag != tar.TypeReg || hdr.Size <= inline {
					continue
				}
				h := sha256.New()
				if _, err := io.Copy(h, tr); err != nil {
					rc.Close()
					t.Fatalf("layer %s: %s: %v", l.DiffID, hdr.Name, err)
				}
				var sum [sha256.Size]byte
				h.Sum(sum[:0])
				if !seen[sum] {
					seen[sum] = true
					size += hdr.Size
					objects++
				}
			}
			rc.Close()
		}
	}
	return size, objects
}
