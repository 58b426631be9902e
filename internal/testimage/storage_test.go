package testimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	storagetypes "go.podman.io/storage/types"
	"golang.org/x/sys/unix"
)

// TestContainersStorageUnpacksToExpectedTree is the oracle for the oracle:
// containers/storage, the unpacker podman and bootc use, must produce
// ExpectedTree, apart from its two known deviations (ExceptSELinux,
// belowNonUTF8Dir). The vfs driver is used because each of its layer
// directories is a complete snapshot of the merged filesystem.
func TestContainersStorageUnpacksToExpectedTree(t *testing.T) {
	testfs.RequirePrivileged(t) // vfs chowns to the image's owners
	img := mustSmallImage(t)
	layout := t.TempDir()
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	graph, run := t.TempDir(), t.TempDir()
	storeName := "containers-storage:[vfs@" + graph + "+" + run + "]localhost/cfs-test:latest"

	// c/image's containers-storage transport gets this same instance from
	// GetStore's cache, so this Shutdown also releases what the copy holds,
	// and it is registered after the TempDirs so it runs before they go.
	store, err := storage.GetStore(storagetypes.StoreOptions{GraphRoot: graph, RunRoot: run, GraphDriverName: "vfs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = store.Shutdown(true) })

	start := time.Now()
	copyImage(t, "oci:"+layout+":latest", storeName)
	t.Logf("copy.Image into containers-storage took %v", time.Since(start))

	stored, err := store.Image(img.ConfigDigest.Encoded()) // image ID = config digest
	if err != nil {
		t.Fatal(err)
	}
	// The layer chain must carry our diff IDs, top layer last.
	var chain, layerIDs []string
	for id := stored.TopLayer; id != ""; {
		l, err := store.Layer(id)
		if err != nil {
			t.Fatal(err)
		}
		chain = append([]string{l.UncompressedDigest.String()}, chain...)
		layerIDs = append([]string{id}, layerIDs...)
		id = l.Parent
	}
	if strings.Join(chain, " ") != strings.Join(digestStrings(img.DiffIDs), " ") {
		t.Fatalf("stored layer chain %v, want %v", chain, img.DiffIDs)
	}

	// Every vfs layer directory is a full snapshot, so each one checks the
	// oracle for a prefix of the layers.
	for i, id := range layerIDs {
		opts := CompareOptions{Xattr: ExceptSELinux}
		if i > 0 {
			opts.Skip = belowNonUTF8Dir
		}
		snapshot := filepath.Join(graph, "vfs", "dir", id)
		if err := img.ExpectedTreeOfLayers(i+1).CompareDir(snapshot, opts); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}
	snapshot := filepath.Join(graph, "vfs", "dir", stored.TopLayer)
	if _, err := os.Lstat(filepath.Join(snapshot, nonUTF8Dir, "inner")); err == nil {
		t.Log("containers/storage now copies non-UTF-8 directories between vfs layers; belowNonUTF8Dir can go")
	}
	tree := img.ExpectedTree()
	opts := CompareOptions{Xattr: ExceptSELinux, Skip: belowNonUTF8Dir}

	t.Run("CompareDirNoticesDamage", func(t *testing.T) {
		damage := []struct {
			path, wantReport string
			do               func(full string) error
		}{
			{"usr/bin/su", "mode 0755, want 4755", func(p string) error { return os.Chmod(p, 0o755) }},
			{"etc/hostname", "content", func(p string) error { return os.WriteFile(p, []byte("cfs-other!!\n"), 0o644) }},
			{"usr/bin/gunzip", "is not a hardlink", func(p string) error { return breakHardlink(p) }},
			{"etc/passwd", "xattrs", func(p string) error { return unix.Lsetxattr(p, "user.extra", []byte("1"), 0) }},
			{"var/lib/app/data.db", "owner 0:0", func(p string) error { return os.Lchown(p, 0, 0) }},
			{"etc/localtime", "symlink to", func(p string) error { return replaceSymlink(p, "/usr/share/zoneinfo/CET") }},
			{PathManyEntries + "/e0000", "missing", func(p string) error { return removeByPrefix(p) }},
			{"etc/unexpected", "not expected", func(p string) error { return os.WriteFile(p, nil, 0o644) }},
			{"usr/share/doc", "mtime", func(p string) error { return os.Chtimes(p, time.Now(), time.Now()) }},
		}
		for _, d := range damage {
			if err := d.do(filepath.Join(snapshot, d.path)); err != nil {
				t.Fatalf("damaging %s: %v", d.path, err)
			}
		}
		err := tree.CompareDir(snapshot, opts)
		if err == nil {
			t.Fatal("CompareDir found no difference after damaging the tree")
		}
		for _, d := range damage {
			if !reportMentions(err.Error(), d.path, d.wantReport) {
				t.Errorf("no %q report for %s in:\n%v", d.wantReport, d.path, err)
			}
		}
	})
}

const nonUTF8Dir = "usr/share/i18n/dir-\xc3\x28"

// belowNonUTF8Dir skips what containers/storage v1.64.1 loses when built
// with CGO_ENABLED=0: the vfs driver then copies the parent layer with
// CopyWithTar, whose walk goes through os.Root.FS(), and fs.ValidPath
// rejects non-UTF-8 names, so the children of such a directory vanish from
// every layer after the one that added them (logged as "Tar: Can't stat
// file"). Layer 0, unpacked directly, is compared in full.
func belowNonUTF8Dir(p string) bool { return strings.HasPrefix(p, nonUTF8Dir+"/") }

func copyImage(t *testing.T, from, to string) {
	t.Helper()
	src, err := alltransports.ParseImageName(from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := alltransports.ParseImageName(to)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = policy.Destroy() }()
	sys := &types.SystemContext{BlobInfoCacheDir: t.TempDir()}
	if _, err := copy.Image(context.Background(), policy, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
		t.Fatalf("copy %s -> %s: %v", from, to, err)
	}
}

func breakHardlink(p string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chtimes(p, fi.ModTime(), fi.ModTime())
}

func replaceSymlink(p, target string) error {
	if err := os.Remove(p); err != nil {
		return err
	}
	return os.Symlink(target, p)
}

// removeByPrefix deletes the entry whose name starts with the base of p:
// names in the many-entries directory have a random suffix.
func removeByPrefix(p string) error {
	matches, err := filepath.Glob(p + "*")
	if err != nil || len(matches) != 1 {
		return os.ErrNotExist
	}
	return os.Remove(matches[0])
}

func reportMentions(report, pathPrefix, what string) bool {
	for _, line := range strings.Split(report, "\n") {
		if strings.Contains(line, `"`+pathPrefix) && strings.Contains(line, what) {
			return true
		}
	}
	return false
}

// TestPodmanUnpacksToExpectedTree repeats the oracle with podman: another
// containers/storage version, built with cgo, so its vfs driver copies
// layers with its own walker and keeps the non-UTF-8 directory's content.
func TestPodmanUnpacksToExpectedTree(t *testing.T) {
	testfs.RequirePrivileged(t)
	bin := testfs.RequireTool(t, "podman")
	img := mustSmallImage(t)
	// podman 4.3 names an image pulled from oci:PATH after PATH, which must
	// then be lowercase; t.TempDir contains the test's name.
	layout, err := os.MkdirTemp("", "cfs-podman-layout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(layout) })
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// A storage.conf of our own keeps the host's (driver options, additional
	// image stores) out of the test; HOME and TMPDIR do the same for caches.
	conf := filepath.Join(state, "storage.conf")
	confText := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", filepath.Join(state, "root"), filepath.Join(state, "run"))
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	podman := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf, "HOME="+state, "TMPDIR="+state)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("podman %v: %v\n%s", args, err, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	name := "localhost/cfs-test:latest"
	podman("pull", "-q", "oci:"+layout+":latest")
	podman("tag", img.ConfigDigest.Encoded(), name)
	root := podman("image", "mount", name)
	t.Cleanup(func() { podman("image", "unmount", name) })
	if err := img.ExpectedTree().CompareDir(root, CompareOptions{Xattr: ExceptSELinux}); err != nil {
		t.Fatal(err)
	}
}
