package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func runApp(args ...string) (int, string, string) {
	return cliutil.RunCaptured(context.Background(), newApp(), nil, args...)
}

func TestConvention(t *testing.T) {
	h := ostreeFixture(t)
	want := status(t, h, "--json")
	// A relative --sysroot reads the same host.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, h.Root)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runApp("--sysroot", rel, "--cmdline", writeCmdline(t, h), "--run-dir", h.RunDir, "--json"); code != 0 || out != want {
		t.Errorf("relative --sysroot: %d %q %q\nwant %q", code, out, errs, want)
	}
	if code, out, _ := runApp("--sysroot", rel, "host-kind"); code != 0 || out != "ostree\n" {
		t.Errorf("host-kind under a relative --sysroot: %d %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, 0, "cfs-status version "},
		{[]string{"--help"}, 0, "EXIT STATUS"},
		{[]string{"install-config", "--help"}, 0, "EXIT STATUS"},
		{[]string{"--sysroot", h.Root, "extra"}, cliutil.ExitUsage, ""},
		{[]string{"--no-such-flag"}, cliutil.ExitUsage, ""},
		{[]string{"--sysroot", t.TempDir()}, cliutil.ExitFailure, ""},
	} {
		code, out, errs := runApp(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || code != 0 && strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: %d %q %q", tc.args, code, out, errs)
		}
	}
}
