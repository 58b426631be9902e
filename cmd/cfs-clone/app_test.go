package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/internal/testpty"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

type appResult struct {
	code           int
	stdout, stderr string
}

// cfsClone runs the command in process.
func cfsClone(stdin io.Reader, args ...string) appResult {
	code, out, errb := cliutil.RunCaptured(context.Background(), newApp(), stdin, args...)
	return appResult{code, out, errb}
}

// inlineList is a list whose files are all inline, so no composefs
// repository is needed to clone it.
func inlineList(t *testing.T) []byte {
	t.Helper()
	digest := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	manifest, config := `{"schemaVersion":2}`, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`
	var buf bytes.Buffer
	w := stream.NewWriter(&buf)
	if err := w.WriteImage(&stream.Image{Source: "oci:/x:latest", ManifestDigest: digest(manifest), ConfigDigest: digest(config), Manifest: manifest, Config: config}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*stream.Entry{
		{Type: stream.TypeDir, Path: "/", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/etc", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/etc/hostname", Mode: 0o644, Size: 5, Inline: []byte("host\n")},
		{Type: stream.TypeSymlink, Path: "/lib", Mode: 0o777, Target: "usr/lib"},
	} {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestInProcess(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	r, err := ostree.Create(repo, ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	list := inlineList(t)

	res := cfsClone(bytes.NewReader(list), "--to", "ostree", "--repo", repo, "--json")
	annotated, _, err := stream.ReadAll(strings.NewReader(res.stdout))
	var sum map[string]any
	if res.code != 0 || err != nil || annotated == nil || json.Unmarshal([]byte(res.stderr), &sum) != nil {
		t.Fatalf("clone: %d %v\nstderr %q", res.code, err, res.stderr)
	}
	// A relative --repo names the same repository.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, repo)
	if err != nil {
		t.Fatal(err)
	}
	if res := cfsClone(bytes.NewReader(list), "--to", "ostree", "--repo", rel, "-q"); res.code != 0 || res.stderr != "" {
		t.Errorf("relative --repo: %+v", res)
	}

	cut := list[:bytes.LastIndexByte(list[:len(list)-1], '\n')+1]
	for name, tc := range map[string]struct {
		stdin io.Reader
		args  []string
		code  int
		msg   string
	}{
		"empty list":        {strings.NewReader(""), []string{"--repo", repo}, cliutil.ExitTruncated, "no image record"},
		"list without end":  {bytes.NewReader(cut), []string{"--repo", repo}, cliutil.ExitTruncated, "without an end record"},
		"not a repository":  {bytes.NewReader(list), []string{"--repo", t.TempDir()}, cliutil.ExitNotRepository, "ostree init --repo="},
		"stdin is terminal": {testpty.Open(t), []string{"--repo", repo}, cliutil.ExitUsage, "stdin is a terminal"},
	} {
		res := cfsClone(tc.stdin, append([]string{"--to", "ostree"}, tc.args...)...)
		if res.code != tc.code || strings.Count(res.stderr, "\n") != 1 || !strings.Contains(res.stderr, tc.msg) || strings.Contains(res.stdout, `"type":"end"`) {
			t.Errorf("%s: status %d (want %d), stderr %q (want %q)", name, res.code, tc.code, res.stderr, tc.msg)
		}
	}
}
