package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
)

// TestPipelineXFSBareUser: the same image in a bare-user repo passes fsck,
// checks out to the same tree, and has the same ContentChecksum as in a
// bare repo (the mode changes how metadata is stored, never the checksums).
func TestPipelineXFSBareUser(t *testing.T) {
	fs := testfs.XFS(t, 0)
	testfs.RequireTool(t, "ostree")
	img, err := testimage.Generate(testimage.Options{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	list := pullList(t, img, fs.Path("composefs"))
	user, bare := fs.Path("user"), fs.Path("bare")
	initRepo(t, user, "bare-user")
	initRepo(t, bare, "bare")
	u := importInto(t, list, user)
	b := importInto(t, list, bare)
	fsck(t, user)
	fsck(t, bare)
	if u.res.ContentChecksum != b.res.ContentChecksum || u.res.Commit != b.res.Commit {
		t.Errorf("bare-user commit %s (content %s), bare %s (content %s)", u.res.Commit, u.res.ContentChecksum, b.res.Commit, b.res.ContentChecksum)
	}
	if u.clone.Mode != "bare-user" || u.clone.Reflinked == 0 || u.clone.Copied != 0 {
		t.Errorf("bare-user clone summary %+v", u.clone)
	}
	co := fs.Path("co")
	mustRun(t, nil, "ostree", "checkout", "--repo="+user, u.res.Ref, co)
	opts := testimage.CompareOptions{IgnoreModTime: true, IgnoreHardlinks: true,
		Xattr: func(name string) bool { return name == "security.capability" }}
	if err := ostreeView(img.ExpectedTree()).CompareDir(co, opts); err != nil {
		t.Error(err)
	}
}

// TestExt4ReflinkPolicy: where FICLONE cannot work, --reflink=always fails
// before writing any object, and auto (also the default there) copies.
func TestExt4ReflinkPolicy(t *testing.T) {
	fs := testfs.Ext4(t, 256*testfs.MiB)
	testfs.RequireTool(t, "ostree")
	img, err := testimage.Generate(testimage.Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	list := pullList(t, img, fs.Path("composefs"))
	repo := fs.Path("repo")
	initRepo(t, repo, "bare")

	res := runTool(t, list, "cfs-clone", "--to", "ostree", "--repo", repo, "--reflink=always")
	if res.err == nil {
		t.Fatal("--reflink=always succeeded on ext4")
	}
	// 5: extents cannot be shared and copying was not allowed (docs/cli.md).
	if ee, ok := res.err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
		t.Errorf("exit status: %v, want 5", res.err)
	}
	msg := strings.TrimSpace(string(res.stderr))
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "does not support reflinks") || !strings.Contains(msg, "--reflink=auto") {
		t.Errorf("error message: %q", msg)
	}
	if len(res.stdout) != 0 {
		t.Errorf("wrote %d bytes of list before failing", len(res.stdout))
	}
	if objs, _ := filepath.Glob(filepath.Join(repo, "objects", "*", "*")); len(objs) != 0 {
		t.Errorf("%d objects written before failing", len(objs))
	}

	for _, args := range [][]string{{"--reflink=auto"}, nil} {
		im := importInto(t, list, repo, args...)
		if im.clone.Policy != "auto" || im.clone.Reflinked != 0 {
			t.Errorf("%v: clone summary %+v", args, im.clone)
		}
		if args != nil && im.clone.Copied == 0 {
			t.Errorf("auto copied nothing: %+v", im.clone)
		}
	}
	fsck(t, repo)
	co := fs.Path("co")
	mustRun(t, nil, "ostree", "checkout", "--repo="+repo, "ostree/container/image/"+strings.TrimPrefix(refs(t, repo), "ostree/container/image/"), co)
	if _, err := os.Stat(filepath.Join(co, "usr/etc/passwd")); err != nil {
		t.Error(err)
	}
}
