package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testhost"
	"github.com/cfs-project/cfs/lib/gc"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func runApp(args ...string) (int, string, string) {
	return cliutil.RunCaptured(context.Background(), newApp(), nil, args...)
}

func TestConvention(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, 0, "cfs-gc version "},
		{[]string{"--help"}, 0, "EXIT STATUS"},
		{[]string{"--no-such-flag"}, cliutil.ExitUsage, ""},
		{[]string{"extra"}, cliutil.ExitUsage, ""},
	} {
		if code, out, errb := runApp(tc.args...); code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("%v: %d %q %q", tc.args, code, out, errb)
		}
	}
}

// TestDryRunThenCollect: the human lines of a dry run, then the JSON of
// the collection, which removes the unpinned image's tag.
func TestDryRunThenCollect(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	repo := filepath.Join(root, "composefs")
	old := testhost.Pull(t, repo, fs.Dir, testhost.Generate(t, 4, "1.0"), "ostree-unverified-registry:quay.io/example/os:1.0")
	cur := testhost.Pull(t, repo, fs.Dir, testhost.Generate(t, 4, "1.1"), "ostree-unverified-registry:quay.io/example/os:1.1")
	h := sysroottest.Composefs(t, root, []sysroottest.Deployment{{Image: cur}}, 0, sysroottest.BLS, false)
	cmdline := fs.Path("cmdline")
	if err := os.WriteFile(cmdline, []byte(h.Cmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--sysroot", root, "--cmdline", cmdline, "--runroot", fs.Path("run")}
	code, out, errb := runApp(append(common, "--dry-run")...)
	if code != 0 || !strings.HasPrefix(out, "Dry run (no files deleted):\nLive images: 1 (pinned by deployments)\nUntagged localhost/bootc-"+old.ManifestDigest()+"\nObjects: ") {
		t.Errorf("dry run: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = runApp(append(common, "--json")...)
	var res gc.Result
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("collection: exit %d\n%s%s", code, out, errb)
	}
	if len(res.Untagged) != 1 || res.ObjectsRemoved == 0 || res.DryRun {
		t.Errorf("collection: %+v", res)
	}
}
