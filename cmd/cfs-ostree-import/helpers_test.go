package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/stream"
)

// bins holds cfs-pull, cfs-clone and cfs-ostree-import, built once.
var bins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cfs-ostree-import-test-")
	if err != nil {
		panic(err)
	}
	bins, err = testbin.Build(dir, "github.com/cfs-project/cfs/cmd/cfs-pull", "github.com/cfs-project/cfs/cmd/cfs-clone", "github.com/cfs-project/cfs/cmd/cfs-ostree-import")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr []byte
	err            error
}

func (r result) String() string { return fmt.Sprintf("%v\nstderr: %s", r.err, r.stderr) }

func runTool(t testing.TB, stdin []byte, name string, args ...string) result {
	t.Helper()
	path, ok := bins[name]
	if !ok {
		path = testfs.RequireTool(t, name)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.Bytes(), errb.Bytes(), err}
}

func mustRun(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	res := runTool(t, stdin, name, args...)
	if res.err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), res)
	}
	return res.stdout
}

// pullList writes img as an OCI layout, pulls it into a composefs repo
// and returns the object list with the names ostree cannot store (the test
// image has non-UTF-8 ones on purpose) left out; TestNonUTF8Refused covers
// those.
func pullList(t testing.TB, img *testimage.Image, composefsRepo string) []byte {
	t.Helper()
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	list := mustRun(t, nil, "cfs-pull", "--repo", composefsRepo, "--insecure-policy", "-q", "oci:"+layout+":latest")
	return filterList(t, list, func(e *stream.Entry) bool {
		return utf8.ValidString(e.Path) && utf8.ValidString(e.Target)
	})
}

// filterList rewrites a list keeping the entries keep accepts.
func filterList(t testing.TB, list []byte, keep func(*stream.Entry) bool) []byte {
	t.Helper()
	r := stream.NewReader(bytes.NewReader(list))
	img, err := r.Image()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := stream.NewWriter(&out)
	if err := w.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if keep(e) {
			if err := w.WriteEntry(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readList returns the entries of a valid list.
func readList(t testing.TB, list []byte) (*stream.Image, []*stream.Entry) {
	t.Helper()
	img, entries, err := stream.ReadAll(bytes.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	return img, entries
}

// reseal replaces a list's end record with one that matches its lines,
// so a test can hand-edit entries and still reach the checks behind the
// stream's own.
func reseal(list []byte) []byte {
	lines := strings.SplitAfter(string(list), "\n")
	var body []string
	for _, l := range lines {
		if l == "" || strings.HasPrefix(l, `{"type":"end"`) {
			continue
		}
		body = append(body, l)
	}
	joined := strings.Join(body, "")
	sum := sha256.Sum256([]byte(joined))
	end := fmt.Sprintf(`{"type":"end","entries":%d,"bytes":%d,"sha256":"%s"}`+"\n", len(body)-1, len(joined), hex.EncodeToString(sum[:]))
	return []byte(joined + end)
}

// editLine applies f to the first line containing marker.
func editLine(t testing.TB, list []byte, marker string, f func(string) string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(list), "\n")
	for i, l := range lines {
		if strings.Contains(l, marker) {
			lines[i] = f(l)
			return reseal([]byte(strings.Join(lines, "")))
		}
	}
	t.Fatalf("no line contains %q", marker)
	return nil
}

// initRepo makes an empty ostree repository with the ostree CLI.
func initRepo(t testing.TB, path, mode string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "ostree", "init", "--repo="+path, "--mode="+mode)
}

func fsck(t testing.TB, repo string) {
	t.Helper()
	if res := runTool(t, nil, "ostree", "fsck", "--repo="+repo); res.err != nil {
		t.Fatalf("ostree fsck: %v\n%s", res, res.stdout)
	}
}

func refs(t testing.TB, repo string) string {
	t.Helper()
	return strings.TrimSpace(string(mustRun(t, nil, "ostree", "refs", "--repo="+repo)))
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}
