package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

var binary, pullBinary string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	dir, err := os.MkdirTemp("", "cfs-clone-test-")
	if err != nil {
		panic(err)
	}
	bins, err := testbin.Build(dir, "github.com/cfs-project/cfs/cmd/cfs-clone", "github.com/cfs-project/cfs/cmd/cfs-pull")
	if err != nil {
		panic(err)
	}
	binary, pullBinary = bins["cfs-clone"], bins["cfs-pull"]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestUsage(t *testing.T) {
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--reflink") || !strings.Contains(string(out), "cfs-ostree-import") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "composefs"}, "not implemented yet"},
		{nil, "--to is required"},
		{[]string{"--to", "tar"}, "want ostree"},
		{[]string{"--to", "ostree", "--reflink", "never"}, "want always or auto"},
		{[]string{"--to", "ostree", "extra"}, "unexpected arguments"},
		{[]string{"--to", "ostree", "--progress-fd", "1"}, "must be 3 or more"},
	} {
		cmd := exec.Command(binary, c.args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		msg := strings.TrimSpace(errb.String())
		if exitCode(err) != 2 || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("cfs-clone %v: exit %d, stderr %q; want exit 2 and %q", c.args, exitCode(err), msg, c.want)
		}
	}
}

func TestMissingRepo(t *testing.T) {
	cmd := exec.Command(binary, "--to", "ostree", "--sysroot", t.TempDir())
	var errb bytes.Buffer
	cmd.Stderr = &errb
	// 4: not a repository (docs/cli.md).
	if err := cmd.Run(); exitCode(err) != 4 || !strings.Contains(errb.String(), "ostree/repo") || !strings.Contains(errb.String(), "ostree init") {
		t.Errorf("exit %d, %q", exitCode(err), errb.String())
	}
}

// TestProgressFD: --progress-fd gets bootc's Start message and byte
// progress, stdout only the list, and stderr the JSON summary.
func TestProgressFD(t *testing.T) {
	testfs.RequirePrivileged(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	repo, err := ostree.Create(repoDir, ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	repo.Close()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return "sha256:" + hex.EncodeToString(h[:]) }
	var list bytes.Buffer
	w := stream.NewWriter(&list)
	w.WriteImage(&stream.Image{Source: "docker://x/y:1", ManifestDigest: sum("{}"), ConfigDigest: sum("{}"), Manifest: "{}", Config: "{}"})
	w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: "/", Mode: 0o755})
	w.WriteEntry(&stream.Entry{Type: stream.TypeFile, Path: "/a", Mode: 0o644, Size: 2, Inline: []byte("a\n")})
	w.WriteEntry(&stream.Entry{Type: stream.TypeSymlink, Path: "/b", Target: "a"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), binary, "--to", "ostree", "--repo", repoDir, "--reflink", "auto", "--json", "--progress-fd", "3")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdin = &list
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var progress bytes.Buffer
	progress.ReadFrom(pr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, errb.Bytes())
	}
	if !strings.HasPrefix(progress.String(), `{"type":"Start"`) {
		t.Errorf("progress fd: %q", progress.String())
	}
	var s struct{ Small, Symlinks, Entries int64 }
	if err := json.Unmarshal(errb.Bytes(), &s); err != nil || s.Small != 1 || s.Symlinks != 1 || s.Entries != 3 {
		t.Errorf("summary %q: %+v %v", errb.Bytes(), s, err)
	}
	r := stream.NewReader(&out)
	img, err := r.Image()
	if err != nil || img.Stores.Ostree == nil || img.Stores.Ostree.Mode != "bare" {
		t.Fatalf("image record %+v %v", img, err)
	}
	r.Next() // the root
	e, _ := r.Next()
	if e.Path != "/a" || len(e.Ostree) != 64 {
		t.Errorf("entry %+v", e)
	}
}
