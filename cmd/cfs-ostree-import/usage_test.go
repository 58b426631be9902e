package main

import (
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	res := runTool(t, nil, "cfs-ostree-import", "--help")
	for _, want := range []string{"/usr/etc", "ostree-ext.composefs-synthesized", "--ref", "--json"} {
		if res.err != nil || !strings.Contains(string(res.stdout), want) {
			t.Errorf("--help lacks %q: %v\n%s", want, res.err, res.stdout)
		}
	}
	res = runTool(t, nil, "cfs-ostree-import", "extra")
	if res.err == nil || !strings.Contains(res.err.Error(), "exit status 2") || !strings.Contains(string(res.stderr), "unexpected arguments") {
		t.Errorf("extra argument: %v", res)
	}
	res = runTool(t, nil, "cfs-ostree-import", "--sysroot", t.TempDir())
	if res.err == nil || !strings.Contains(string(res.stderr), "ostree/repo") {
		t.Errorf("missing repo: %v", res)
	}
}
