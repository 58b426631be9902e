package main

import (
	"bytes"
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
	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	app := newApp()
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	code := cliutil.Run(context.Background(), app, append([]string{"cfs-fsck"}, args...))
	return code, out.String(), errb.String()
}

// TestImagesExitStatus: 1 while an image is missing from
// containers-storage, 0 once --repair restored it; --json is one object
// on stdout with bootc's keys in bootc's order.
func TestImagesExitStatus(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	im := testhost.Pull(t, filepath.Join(root, "composefs"), fs.Dir, testhost.Generate(t, 3, "1.0"), "ostree-unverified-registry:quay.io/example/os:1")
	h := sysroottest.Composefs(t, root, []sysroottest.Deployment{{Image: im}}, 0, sysroottest.BLS, false)
	if err := sysroot.WriteBootcJSON(root, sysroot.UnifiedEnabled); err != nil {
		t.Fatal(err)
	}
	cmdline := fs.Path("cmdline")
	if err := os.WriteFile(cmdline, []byte(h.Cmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--sysroot", root, "images", "--cmdline", cmdline, "--runroot", fs.Path("run")}

	code, out, errb := run(t, append(common, "--json")...)
	if code != cliutil.ExitFailure || !strings.Contains(errb, "1 image(s) failed the check") {
		t.Errorf("missing image: exit %d, stderr %q", code, errb)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(out))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if got := strings.Join(keys, ","); got != "unifiedStorageEnabled,binding,reflinksSupported,images,ok" {
		t.Errorf("JSON keys %s", got)
	}

	if code, out, errb = run(t, append(common, "--repair")...); code != 0 || !strings.Contains(out, "[REPAIRED] Successfully restored") {
		t.Errorf("repair: exit %d\n%s%s", code, out, errb)
	}
	if code, out, errb = run(t, common...); code != 0 || !strings.HasSuffix(out, "bootc fsck: all checks passed (1 image(s) OK)\n") {
		t.Errorf("after repair: exit %d\n%s%s", code, out, errb)
	}
	if code, _, _ = run(t, "--sysroot", root, "images", "--bogus"); code != cliutil.ExitUsage {
		t.Errorf("bad flag: exit %d", code)
	}
}

// TestObjectsExitStatus: 0 on a clean repository, 1 with a stray file
// (reported in the JSON by code and path), 0 once --repair removed it.
func TestObjectsExitStatus(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	im := testhost.Pull(t, filepath.Join(root, "composefs"), fs.Dir, testhost.Generate(t, 3, "1.0"), "ostree-unverified-registry:quay.io/example/os:1")
	sysroottest.Composefs(t, root, []sysroottest.Deployment{{Image: im}}, 0, sysroottest.BLS, false)
	common := []string{"--sysroot", root, "objects", "--runroot", fs.Path("run")}
	if code, out, errb := run(t, common...); code != 0 || !strings.Contains(out, "no problems found") {
		t.Fatalf("clean: exit %d\n%s%s", code, out, errb)
	}
	stray := filepath.Join(root, "composefs", "objects", ".tmp-object-left")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, append(common, "--json")...)
	var rep struct {
		Problems []struct{ Code, Path string }
		OK       bool
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Code != "stray-file" || rep.Problems[0].Path != stray {
		t.Errorf("stray file: exit %d, %s (%v)", code, out, err)
	}
	if code, out, errb := run(t, append(common, "--repair")...); code != 0 || !strings.Contains(out, "all repaired") {
		t.Errorf("repair: exit %d\n%s%s", code, out, errb)
	}
	if code, _, _ := run(t, append(common, "--jobs", "0")...); code != cliutil.ExitUsage {
		t.Errorf("--jobs 0: exit %d", code)
	}
}
