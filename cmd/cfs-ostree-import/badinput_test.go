package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// wantFailure checks a failed command: exit status 1, one line on stderr
// naming what is wrong, no ref in the repo, and a repo fsck accepts.
func wantFailure(t *testing.T, res result, repo string, want ...string) {
	t.Helper()
	if res.err == nil {
		t.Fatalf("succeeded; stdout %.200s", res.stdout)
	}
	msg := strings.TrimSpace(string(res.stderr))
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if r := refs(t, repo); r != "" {
		t.Errorf("refs after a failure: %s", r)
	}
	fsck(t, repo)
}

// pipe runs cfs-clone on list and cfs-ostree-import on what it wrote, as a
// shell pipeline would, and returns the first failure.
func pipe(t *testing.T, list []byte, repo string) result {
	t.Helper()
	c := runTool(t, list, "cfs-clone", "--to", "ostree", "--repo", repo)
	i := runTool(t, c.stdout, "cfs-ostree-import", "--repo", repo)
	if c.err != nil {
		if i.err == nil {
			t.Errorf("cfs-ostree-import accepted the output of a failed cfs-clone")
		}
		return c
	}
	return i
}

func TestBadInput(t *testing.T) {
	fs := testfs.XFS(t, 0)
	testfs.RequireTool(t, "ostree")
	img, err := testimage.Generate(testimage.Options{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	raw := mustRun(t, nil, "cfs-pull", "--repo", fs.Path("composefs"), "--insecure-policy", "-q", "oci:"+layout+":latest")
	list := pullList(t, img, fs.Path("composefs"))
	_, entries := readList(t, list)
	var bash *stream.Entry
	for _, e := range entries {
		if e.Path == "/usr/bin/bash" {
			bash = e
		}
	}
	repo := fs.Path("repo")
	initRepo(t, repo, "bare")
	// The annotated list of a clone into a scratch repo on the same
	// filesystem: it names objects our repo does not have.
	other := fs.Path("other")
	initRepo(t, other, "bare")
	annotated := mustRun(t, list, "cfs-clone", "--to", "ostree", "--repo", other, "-q")

	t.Run("truncated", func(t *testing.T) {
		cut := list[:bytes.LastIndexByte(list[:len(list)/2], '\n')+1]
		wantFailure(t, pipe(t, cut, repo), repo, "without an end record")
		// Cut mid-line, and an annotated list cut just before its end record.
		wantFailure(t, pipe(t, list[:len(list)/2], repo), repo, "no newline")
		end := bytes.LastIndex(annotated[:len(annotated)-1], []byte("\n")) + 1
		wantFailure(t, runTool(t, annotated[:end], "cfs-ostree-import", "--repo", other), other, "without an end record")
	})
	t.Run("wrong end record", func(t *testing.T) {
		bad := bytes.Replace(list, []byte(`{"type":"end","entries":`), []byte(`{"type":"end","entries":1`), 1)
		wantFailure(t, pipe(t, bad, repo), repo, "end record counts")
	})
	t.Run("unknown type", func(t *testing.T) {
		bad := editLine(t, list, `"path":"/usr/bin/bash"`, func(l string) string {
			return strings.Replace(l, `"type":"file"`, `"type":"door"`, 1)
		})
		wantFailure(t, pipe(t, bad, repo), repo, "line", "unknown record type \"door\"")
	})
	t.Run("src missing", func(t *testing.T) {
		bad := editLine(t, list, `"path":"/usr/bin/bash"`, func(l string) string {
			return strings.Replace(l, bash.Src, "/nonexistent/object", 1)
		})
		wantFailure(t, pipe(t, bad, repo), repo, "/usr/bin/bash", "/nonexistent/object")
	})
	t.Run("src bytes differ", func(t *testing.T) {
		data, err := os.ReadFile(bash.Src)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		forged := fs.Path("forged")
		if err := os.WriteFile(forged, data, 0o644); err != nil {
			t.Fatal(err)
		}
		bad := editLine(t, list, `"path":"/usr/bin/bash"`, func(l string) string {
			return strings.Replace(l, bash.Src, forged, 1)
		})
		wantFailure(t, pipe(t, bad, repo), repo, "/usr/bin/bash", "fs-verity digest", bash.Composefs)
	})
	t.Run("symlink target with NUL", func(t *testing.T) {
		bad := editLine(t, list, `"type":"symlink"`, func(l string) string {
			i := strings.Index(l, `"target":"`) + len(`"target":"`)
			return l[:i] + `a\u0000` + l[i:]
		})
		wantFailure(t, pipe(t, bad, repo), repo, "symlink target contains a NUL byte")
	})
	t.Run("non-UTF-8 name", func(t *testing.T) {
		wantFailure(t, pipe(t, raw, repo), repo, "not UTF-8")
	})
	t.Run("device", func(t *testing.T) {
		bad := editLine(t, list, `"path":"/usr/bin/bash"`, func(string) string {
			return `{"type":"chardev","path":"/usr/bin/bash","mode":420,"rdev":259}` + "\n"
		})
		wantFailure(t, pipe(t, bad, repo), repo, "/usr/bin/bash", "chardev cannot be stored")
	})
	t.Run("file metadata edited after clone", func(t *testing.T) {
		// The symlink check has a counterpart for files: the object's
		// stored metadata must be the entry's.
		for name, edit := range map[string][2]string{
			"mode":  {`"mode":493`, `"mode":511`},
			"owner": {`"uid":0`, `"uid":1000`},
		} {
			bad := editLine(t, annotated, `"path":"/usr/bin/bash"`, func(l string) string {
				if !strings.Contains(l, edit[0]) {
					t.Fatalf("%s: no %s in %s", name, edit[0], l)
				}
				return strings.Replace(l, edit[0], edit[1], 1)
			})
			wantFailure(t, runTool(t, bad, "cfs-ostree-import", "--repo", other), other, "/usr/bin/bash", "was stored with", "edited after cfs-clone")
		}
		if res := runTool(t, annotated, "cfs-ostree-import", "--repo", other, "--ref", "unedited"); res.err != nil {
			t.Fatalf("the unedited list: %v\n%s", res.err, res.stderr)
		}
		mustRun(t, nil, "ostree", "refs", "--repo="+other, "--delete", "unedited")
	})
	t.Run("not annotated", func(t *testing.T) {
		wantFailure(t, runTool(t, list, "cfs-ostree-import", "--repo", repo), repo, "no ostree checksum", "cfs-clone")
	})
	// cloneInto clones the list into a new repository and returns it, the
	// annotated list and /usr/bin/bash's object.
	cloneInto := func(t *testing.T, name string) (scratch string, out []byte, sum string) {
		scratch = fs.Path(name)
		initRepo(t, scratch, "bare")
		out = mustRun(t, list, "cfs-clone", "--to", "ostree", "--repo", scratch, "-q")
		_, es := readList(t, out)
		for _, e := range es {
			if e.Path == "/usr/bin/bash" {
				sum = e.Ostree
			}
		}
		return scratch, out, sum
	}
	t.Run("object missing", func(t *testing.T) {
		// As if a prune ran between cfs-clone and cfs-ostree-import.
		scratch, out, sum := cloneInto(t, "scratch")
		if err := unix.Unlink(filepath.Join(scratch, ostree.ObjectPath(sum, ostree.ObjectFile))); err != nil {
			t.Fatal(err)
		}
		wantFailure(t, runTool(t, out, "cfs-ostree-import", "--repo", scratch), scratch, "/usr/bin/bash", sum, "is not in")
	})
	t.Run("object damaged", func(t *testing.T) {
		// As a power cut before the sync can leave it: named, but short.
		scratch, out, sum := cloneInto(t, "scratch-damaged")
		if err := os.Truncate(filepath.Join(scratch, ostree.ObjectPath(sum, ostree.ObjectFile)), 1); err != nil {
			t.Fatal(err)
		}
		wantFailure(t, runTool(t, out, "cfs-ostree-import", "--repo", scratch), scratch, "/usr/bin/bash", "is 1 bytes", "damaged object", "run cfs-clone again")
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{{"--to", "composefs"}, {}, {"--to", "ostree", "--repo", repo, "--reflink=never"}} {
			res := runTool(t, list, "cfs-clone", args...)
			if code := res.err; code == nil || !strings.Contains(code.Error(), "exit status 2") {
				t.Errorf("cfs-clone %v: %v, want exit status 2", args, res)
			}
		}
		res := runTool(t, list, "cfs-clone", "--to", "composefs")
		if !strings.Contains(string(res.stderr), "not implemented yet") {
			t.Errorf("--to composefs: %s", res.stderr)
		}
	})
}
