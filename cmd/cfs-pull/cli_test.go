package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/pull"
)

// cfsPullIn runs the command in process, in the test's own directory.
func cfsPullIn(args ...string) (int, []byte, string) {
	code, out, errb := cliutil.RunCaptured(context.Background(), newApp(), nil, args...)
	return code, []byte(out), errb
}

// A relative --repo used to pull and tag, then fail ("src: path … is not
// absolute"), so that `cfs-upgrade --sysroot sysroot` could never work.
func TestRelativeRepoAndSysroot(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 3})
	dir := t.TempDir()
	for _, args := range [][]string{{"--repo", "composefs"}, {"--sysroot", "."}} {
		cmd := exec.Command(binary, append(args, "--insecure-policy", src)...)
		cmd.Dir = dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		rec, entries := readList(t, out.Bytes())
		if want := filepath.Join(dir, "composefs"); rec.Stores.Composefs.Repo != want {
			t.Errorf("%v: stores.composefs.repo %q, want %q", args, rec.Stores.Composefs.Repo, want)
		}
		for _, e := range entries {
			if e.Src != "" && !strings.HasPrefix(e.Src, dir+"/composefs/objects/") {
				t.Errorf("%v: %s: src %q", args, e.Path, e.Src)
				break
			}
		}
	}
}

// -o /dev/null and -o /dev/stdout used to do all the work and exit 1
// ("sync /dev/null: invalid argument").
func TestOutputToDevices(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 4})
	repo := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repo, "--insecure-policy", "-o", "/dev/null", src)
	if res.err != nil || len(res.stdout) != 0 {
		t.Errorf("-o /dev/null: %v, %d bytes on stdout\n%s", res.err, len(res.stdout), res.stderr)
	}
	// stdout is a pipe here.
	res = cfsPull(t, "--repo", repo, "--insecure-policy", "-o", "/dev/stdout", src)
	if res.err != nil {
		t.Fatalf("-o /dev/stdout: %v\n%s", res.err, res.stderr)
	}
	readList(t, res.stdout)
	// A regular file is still written whole, end record included.
	file := filepath.Join(t.TempDir(), "list")
	if res := cfsPull(t, "--repo", repo, "--insecure-policy", "-o", file, src); res.err != nil {
		t.Fatalf("-o FILE: %v\n%s", res.err, res.stderr)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	readList(t, data)
}

func TestInProcess(t *testing.T) {
	img, src := ociLayout(t, testimage.Options{Seed: 5})
	repo := filepath.Join(t.TempDir(), "composefs")
	code, out, stderr := cfsPullIn("--repo", repo, "--insecure-policy", "--json", src)
	if code != 0 {
		t.Fatalf("pull: %d\n%s", code, stderr)
	}
	rec, _ := readList(t, out)
	// --json: the summary on stderr, after any progress lines.
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var sum pull.Summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.ManifestDigest != img.ManifestDigest.String() ||
		sum.Image != rec.Stores.Composefs.Image || sum.LayersFetched != len(img.Layers) || sum.ObjectsNew == 0 {
		t.Errorf("--json summary: %v %+v\n%s", err, sum, stderr)
	}

	// --from-repo gives the same list without a source.
	code, again, stderr := cfsPullIn("--repo", repo, "--from-repo", rec.Stores.Composefs.Tag, "-q")
	if code != 0 || stderr != "" {
		t.Fatalf("--from-repo: %d %s", code, stderr)
	}
	rec2, _ := readList(t, again)
	if rec2.ManifestDigest != rec.ManifestDigest || rec2.Stores.Composefs.Image != rec.Stores.Composefs.Image || len(rec2.Layers) != len(rec.Layers) || rec2.Layers[0].Digest != rec.Layers[0].Digest {
		t.Errorf("--from-repo record %+v, want %+v", rec2, rec)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--repo", repo}, cliutil.ExitUsage, "give exactly one SOURCE"},
		{[]string{"--repo", repo, "--digest-algo", "md5", src}, cliutil.ExitUsage, "--digest-algo"},
		{[]string{"--repo", repo, "--progress-fd", "1", src}, cliutil.ExitUsage, "--progress-fd"},
		{[]string{"--repo", t.TempDir(), "--from-repo", "localhost/x"}, cliutil.ExitNotRepository, "not a composefs repository"},
		{[]string{"--repo", repo, "--from-repo", "localhost/nothing"}, cliutil.ExitFailure, "no such tag"},
	} {
		code, out, stderr := cfsPullIn(tc.args...)
		if code != tc.code || len(out) != 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: status %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, stderr, tc.msg)
		}
	}
}

// --decompressor: builtin and a program pull the same image; a program
// that is not there is refused before anything is fetched.
func TestDecompressorFlag(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 5})
	lists := map[string]string{}
	choices := []string{"builtin", "auto", "default"}
	if p, err := exec.LookPath("pigz"); err == nil {
		choices = append(choices, p)
	}
	for _, choice := range choices {
		repoDir := filepath.Join(t.TempDir(), "composefs")
		res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--quiet", "--decompressor", choice, src)
		if res.err != nil {
			t.Fatalf("--decompressor %s: %v\n%s", choice, res.err, res.stderr)
		}
		// The end record's checksum covers the repository's path.
		list := strings.ReplaceAll(string(res.stdout), repoDir, "REPO")
		lists[choice] = list[:strings.LastIndex(list, `{"type":"end"`)]
	}
	for _, choice := range choices[1:] {
		if lists[choice] != lists["builtin"] {
			t.Errorf("--decompressor %s listed another image than builtin", choice)
		}
	}
	repoDir := filepath.Join(t.TempDir(), "composefs")
	res := cfsPull(t, "--repo", repoDir, "--insecure-policy", "--decompressor", "/nonexistent/inflate", src)
	msg := strings.TrimSpace(string(res.stderr))
	if res.err == nil || strings.Contains(msg, "\n") || !strings.Contains(msg, "--decompressor") || !strings.Contains(msg, "/nonexistent/inflate") {
		t.Errorf("a missing decompressor: %v, want one line naming it:\n%s", res.err, msg)
	}
	if _, err := os.Stat(repoDir); err == nil {
		t.Error("the repository was created before the decompressor was refused")
	}
}
