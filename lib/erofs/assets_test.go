package erofs_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
)

// assetsDir holds the composefs C test-suite dumpfiles with the sha256 of
// the image mkcomposefs writes for each: testdata/composefs-assets, or
// CFS_COMPOSEFS_ASSETS (a full copy of composefs's tests/assets, with the
// large trees left out here). A missing directory is a failure in CI.
func assetsDir(t testing.TB) string {
	dir := assetsDirOrEmpty()
	if dir == "" {
		if os.Getenv("CI") == "true" || os.Getenv("CFS_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("composefs test assets not found at %s", assetsPath())
		}
		t.Skipf("composefs test assets not found at %s (set CFS_COMPOSEFS_ASSETS)", assetsPath())
	}
	return dir
}

func assetsPath() string {
	if dir := os.Getenv("CFS_COMPOSEFS_ASSETS"); dir != "" {
		return dir
	}
	return filepath.Join("testdata", "composefs-assets")
}

func assetsDirOrEmpty() string {
	dir := assetsPath()
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

func readAsset(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

// assetOptions follows the C test-suite: NAME.version pins min=max, else
// mkcomposefs's defaults (0, upgraded to 1 by a whiteout).
func assetOptions(t testing.TB, dumpPath string) erofs.Options {
	v, err := os.ReadFile(strings.TrimSuffix(strings.TrimSuffix(dumpPath, ".gz"), ".dump") + ".dump.version")
	if err != nil {
		return erofs.Options{Version: 0, MaxVersion: 1}
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(v)))
	if err != nil {
		t.Fatal(err)
	}
	return erofs.Options{Version: n, MaxVersion: n}
}

type asset struct {
	name, path, sha256 string
}

func assets(t testing.TB) []asset {
	dir := assetsDir(t)
	sums, _ := filepath.Glob(filepath.Join(dir, "*.sha256"))
	var out []asset
	for _, s := range sums {
		want, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimSuffix(s, ".sha256")
		out = append(out, asset{filepath.Base(path), path, strings.Fields(string(want))[0]})
	}
	if len(out) == 0 {
		t.Fatalf("no *.sha256 in %s", dir)
	}
	return out
}

func buildImage(t testing.TB, root *erofs.Node, opts erofs.Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := erofs.Write(&buf, root, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parseDump(t testing.TB, data []byte, name string) *erofs.Node {
	t.Helper()
	root, err := dumpfile.Parse(bytes.NewReader(data), name)
	if err != nil {
		t.Fatal(err)
	}
	return root
}
