package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func fsckList(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return cliutil.RunCaptured(context.Background(), newApp(), bytes.NewReader(stdin), append([]string{"list"}, args...)...)
}

// TestListVectors runs `cfs-fsck list` on the conformance vectors: status 0
// for the valid ones, 1 with the vector's error, named by line, for the
// invalid ones (a truncated list included), from stdin and from a file.
func TestListVectors(t *testing.T) {
	valid, _ := filepath.Glob("../../lib/stream/testdata/valid/*.ndjson")
	invalid, _ := filepath.Glob("../../lib/stream/testdata/invalid/*.ndjson")
	if len(valid) == 0 || len(invalid) == 0 {
		t.Fatal("no conformance vectors")
	}
	for _, f := range valid {
		data, _ := os.ReadFile(f)
		code, out, errs := fsckList(t, data)
		if code != 0 || !strings.HasPrefix(out, "valid object list: image sha256:") || errs != "" {
			t.Errorf("%s: exit %d\n%s%s", f, code, out, errs)
		}
		code, out, _ = fsckList(t, nil, "--json", f)
		if code != 0 || !strings.HasPrefix(out, `{"valid":true,"entries":`) {
			t.Errorf("%s --json: exit %d %s", f, code, out)
		}
		// Sealing the list without its end record gives the list back.
		unsealed := data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1]
		code, out, errs = fsckList(t, unsealed, "--seal")
		if code != 0 || out != string(data) {
			t.Errorf("%s --seal: exit %d %s\n%s", f, code, errs, out)
		}
	}
	for _, f := range invalid {
		data, _ := os.ReadFile(f)
		want, _ := os.ReadFile(strings.TrimSuffix(f, ".ndjson") + ".err")
		code, out, errs := fsckList(t, data)
		if code != cliutil.ExitFailure || out != "" || errs != "cfs-fsck: "+string(want) {
			t.Errorf("%s: exit %d, stdout %q\nstderr %q\nwant   %q", f, code, out, errs, "cfs-fsck: "+string(want))
		}
	}
}

// TestListSealRefuses: --seal checks what it seals; a refused line stops
// it before any end record is written.
func TestListSealRefuses(t *testing.T) {
	data, _ := os.ReadFile("../../lib/stream/testdata/valid/every-type.ndjson")
	lines := strings.SplitAfter(string(data), "\n")
	code, _, errs := fsckList(t, data, "--seal")
	if code != 1 || !strings.Contains(errs, "already has an end record") {
		t.Errorf("sealing a sealed list: exit %d %s", code, errs)
	}
	bad := strings.Join(lines[:3], "") + `{"type":"file","path":"/a/../b","mode":420}` + "\n"
	code, out, errs := fsckList(t, []byte(bad), "--seal")
	if code != 1 || !strings.Contains(errs, "object list line 4:") || strings.Contains(out, `"type":"end"`) {
		t.Errorf("sealing a bad list: exit %d %s\n%s", code, errs, out)
	}
	if code, _, errs := fsckList(t, nil, "a", "b"); code != cliutil.ExitUsage {
		t.Errorf("two files: exit %d %s", code, errs)
	}
}
