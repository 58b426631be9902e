package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/internal/testpty"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

type appResult struct {
	code           int
	stdout, stderr string
}

func cfsImport(stdin io.Reader, args ...string) appResult {
	code, out, errb := cliutil.RunCaptured(context.Background(), newApp(), stdin, args...)
	return appResult{code, out, errb}
}

// annotatedList clones a list whose files are all inline into repo and
// returns the annotated list.
func annotatedList(t *testing.T, repo *ostree.Repo, source string) []byte {
	t.Helper()
	digest := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	manifest, config := `{"schemaVersion":2}`, `{"architecture":"amd64","os":"linux","created":"2025-01-01T00:00:00Z","rootfs":{"type":"layers","diff_ids":[]}}`
	var list, out bytes.Buffer
	w := stream.NewWriter(&list)
	if err := w.WriteImage(&stream.Image{Source: source, ManifestDigest: digest(manifest), ConfigDigest: digest(config), Manifest: manifest, Config: config}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*stream.Entry{
		{Type: stream.TypeDir, Path: "/", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/usr", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/usr/hostname", Mode: 0o644, Size: 5, Inline: []byte("host\n")},
	} {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := clone.ToOstree(context.Background(), repo, &list, &out, clone.Options{}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	repo, err := ostree.Create(dir, ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	list := annotatedList(t, repo, "docker://example.com/os:1")
	noSource := annotatedList(t, repo, "")
	repo.Close()

	res := cfsImport(bytes.NewReader(list), "--repo", dir, "--json")
	var sum struct{ Commit, Ref string }
	if res.code != 0 || json.Unmarshal([]byte(res.stdout), &sum) != nil || len(sum.Commit) != 64 || sum.Ref == "" || res.stderr != "" {
		t.Fatalf("import --json: %+v", res)
	}
	if res := cfsImport(bytes.NewReader(list), "--repo", dir); res.code != 0 || strings.TrimSpace(res.stdout) != sum.Commit {
		t.Errorf("import: %+v, want commit %s", res, sum.Commit)
	}

	cut := list[:bytes.LastIndexByte(list[:len(list)-1], '\n')+1]
	for name, tc := range map[string]struct {
		stdin io.Reader
		args  []string
		code  int
		msg   string
	}{
		"empty list":        {strings.NewReader(""), []string{"--repo", dir}, cliutil.ExitTruncated, "no image record"},
		"list without end":  {bytes.NewReader(cut), []string{"--repo", dir}, cliutil.ExitTruncated, "without an end record"},
		"not a repository":  {bytes.NewReader(list), []string{"--repo", t.TempDir()}, cliutil.ExitNotRepository, "not an ostree repository"},
		"stdin is terminal": {testpty.Open(t), []string{"--repo", dir}, cliutil.ExitUsage, "stdin is a terminal"},
		"bad ref":           {bytes.NewReader(list), []string{"--repo", dir, "--ref", "a//b"}, cliutil.ExitUsage, `--ref "a//b"`},
		"no source":         {bytes.NewReader(noSource), []string{"--repo", dir}, cliutil.ExitFailure, "give --ref or --imgref"},
	} {
		res := cfsImport(tc.stdin, tc.args...)
		if res.code != tc.code || strings.Count(res.stderr, "\n") != 1 || !strings.Contains(res.stderr, tc.msg) || res.stdout != "" {
			t.Errorf("%s: status %d (want %d), stderr %q (want %q)", name, res.code, tc.code, res.stderr, tc.msg)
		}
	}
}
