package main

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
)

// cfsImage runs the command in process with stdin and returns its status,
// stdout and stderr.
func cfsImage(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	return cliutil.RunCaptured(context.Background(), newApp(), stdin, args...)
}

func TestInProcess(t *testing.T) {
	const in = "/ 4096 40755 2 0 0 0 5.5 - - -\n/a 2 100644 1 7 8 0 5.5 - hi -\n"
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	code, digest, stderr := cfsImage(t, strings.NewReader(in), "mkfs", "--from-dumpfile", "--digest-algo", "sha256", "-", img)
	if code != 0 || len(strings.TrimSpace(digest)) != 64 || stderr != "" {
		t.Fatalf("mkfs: %d %q %q", code, digest, stderr)
	}
	code, js, _ := cfsImage(t, strings.NewReader(in), "mkfs", "--json", "--from-dumpfile", "--digest-algo", "sha256", "-", img)
	var sum struct{ Image, Algorithm, Digest string }
	if err := json.Unmarshal([]byte(js), &sum); code != 0 || err != nil || sum.Digest != strings.TrimSpace(digest) || sum.Algorithm != "sha256" || sum.Image != img {
		t.Errorf("mkfs --json: %d %q %v", code, js, err)
	}
	if code, out, _ := cfsImage(t, nil, "dump", img); code != 0 || out != in {
		t.Errorf("dump: %d %q, want %q", code, out, in)
	}

	for _, args := range [][]string{
		{"mkfs", "only-one"},
		{"mkfs", "--digest-algo", "md5", "a", "b"},
		{"mkfs", "--version", "5", "a", "b"},
		{"dump"},
		{"frobnicate"},
		{"mkfs", "--no-such-flag"},
	} {
		if code, out, stderr := cfsImage(t, nil, args...); code != cliutil.ExitUsage || out != "" || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: status %d, stdout %q, stderr %q; want usage (2) in one line", args, code, out, stderr)
		}
	}
	if code, _, stderr := cfsImage(t, nil, "dump", filepath.Join(dir, "missing")); code != 1 || !strings.HasPrefix(stderr, "cfs-image: ") {
		t.Errorf("missing image: %d %q", code, stderr)
	}
	if code, out, _ := cfsImage(t, nil, "--version"); code != 0 || !strings.HasPrefix(out, "cfs-image version ") {
		t.Errorf("--version: %d %q", code, out)
	}
	for _, args := range [][]string{{"--help"}, {"mkfs", "--help"}} {
		if code, out, _ := cfsImage(t, nil, args...); code != 0 || !strings.Contains(out, "EXIT STATUS") {
			t.Errorf("%v: %d %q", args, code, out)
		}
	}
}
