package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

func runDedupe(args ...string) (int, string, string) {
	return cliutil.RunCaptured(context.Background(), newApp(), nil, args...)
}

// TestErrors: each bad call is one line naming what is wrong, with the
// runner's exit status.
func TestErrors(t *testing.T) {
	ostreeBin := testfs.RequireTool(t, "ostree")
	root := t.TempDir()
	if code, _, errb := runDedupe("--sysroot", root); code != 2 || !strings.Contains(errb, "COMMIT or REF") {
		t.Errorf("no argument: %d %s", code, errb)
	}
	if code, _, errb := runDedupe("--sysroot", root, "x"); code != 4 {
		t.Errorf("no ostree repository: %d %s", code, errb)
	}
	repo := filepath.Join(root, "ostree/repo")
	os.MkdirAll(repo, 0o755)
	if out, err := exec.Command(ostreeBin, "init", "--repo="+repo, "--mode=bare").CombinedOutput(); err != nil {
		t.Fatalf("ostree init: %v %s", err, out)
	}
	if code, _, errb := runDedupe("--sysroot", root, "x"); code != 4 || !strings.Contains(errb, "composefs") {
		t.Errorf("no composefs repository: %d %s", code, errb)
	}
	r, err := composefs.Create(filepath.Join(root, "composefs"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if code, _, errb := runDedupe("--sysroot", root, "no/such/ref"); code != 2 || !strings.Contains(errb, "no/such/ref: no such commit or ref") {
		t.Errorf("unknown ref: %d %s", code, errb)
	}
	missing := strings.Repeat("ab", 32)
	if code, _, errb := runDedupe("--sysroot", root, missing); code != 1 || !strings.Contains(errb, missing) || strings.Count(strings.TrimSpace(errb), "\n") != 0 {
		t.Errorf("missing commit: %d %q", code, errb)
	}
}
