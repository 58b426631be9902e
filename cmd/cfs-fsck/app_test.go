package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func TestConvention(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, 0, "cfs-fsck version "},
		{[]string{"--help"}, 0, "EXIT STATUS"},
		{[]string{"--no-such-flag"}, cliutil.ExitUsage, ""},
	} {
		app := newApp()
		var out, errb bytes.Buffer
		app.Writer, app.ErrWriter = &out, &errb
		if code := cliutil.Run(context.Background(), app, append([]string{"cfs-fsck"}, tc.args...)); code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("%v: %d %q %q", tc.args, code, out.String(), errb.String())
		}
	}
}
