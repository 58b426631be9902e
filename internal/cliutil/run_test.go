package cliutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

type result struct {
	code           int
	stdout, stderr string
}

// run runs a fresh app built by newApp in process.
func run(ctx context.Context, app *cli.App, args ...string) result {
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter, app.Reader = &out, &errb, strings.NewReader("")
	code := Run(ctx, app, append([]string{app.Name}, args...))
	return result{code, out.String(), errb.String()}
}

func testApp(action cli.ActionFunc) *cli.App {
	return &cli.App{
		Name:   "cfs-test",
		Usage:  "a test command",
		Flags:  []cli.Flag{SysrootFlag, &cli.PathFlag{Name: "repo"}, &cli.StringFlag{Name: "output", Value: "-"}},
		Action: action,
		Commands: []*cli.Command{{
			Name:   "sub",
			Flags:  []cli.Flag{&cli.PathFlag{Name: "root"}},
			Action: action,
		}},
	}
}

func TestExitStatusFromErrors(t *testing.T) {
	_, emptyErr := stream.NewReader(strings.NewReader("")).Image()
	_, cfsErr := composefs.Open(t.TempDir())
	_, ostreeErr := ostree.Open(t.TempDir())
	_, ostreeMissing := ostree.Open(filepath.Join(t.TempDir(), "missing"))
	for _, tc := range []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"nil", nil, ExitOK, ""},
		{"plain", errors.New("disk on fire"), ExitFailure, "cfs-test: disk on fire\n"},
		{"usage", Usage("--to %q: want ostree", "x"), ExitUsage, "cfs-test: --to \"x\": want ostree\n"},
		{"empty list", emptyErr, ExitTruncated, ""},
		{"truncated list", fmt.Errorf("reading: %w", stream.ErrTruncated), ExitTruncated, ""},
		{"composefs not a repo", cfsErr, ExitNotRepository, ""},
		{"ostree not a repo", ostreeErr, ExitNotRepository, ""},
		{"ostree missing", ostreeMissing, ExitNotRepository, ""},
		{"reflink refused", Hint(&reflink.RefusedError{Dst: "a", Src: "b", Err: unix.EXDEV}, "use --reflink=auto"), ExitReflinkRefused, ""},
		{"two lines", errors.New("first\nsecond\n"), ExitFailure, "cfs-test: first second\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := run(context.Background(), testApp(func(*cli.Context) error { return tc.err }))
			if res.code != tc.code {
				t.Errorf("status %d, want %d (%s)", res.code, tc.code, res.stderr)
			}
			if tc.msg != "" && res.stderr != tc.msg {
				t.Errorf("stderr %q, want %q", res.stderr, tc.msg)
			}
			if tc.err != nil && strings.Count(res.stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", res.stderr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	ok := func(*cli.Context) error { return nil }
	for _, args := range [][]string{{"--no-such-flag"}, {"sub", "--no-such-flag"}, {"--sysroot"}} {
		res := run(context.Background(), testApp(ok), args...)
		if res.code != ExitUsage || res.stdout != "" || !strings.Contains(res.stderr, "see --help") || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("%v: %+v", args, res)
		}
	}
	// A command made of subcommands only: urfave/cli says "No help topic"
	// with status 3 for an unknown one.
	app := &cli.App{Name: "cfs-test", Commands: []*cli.Command{{Name: "sub", Action: ok}}}
	if res := run(context.Background(), app, "nonsense"); res.code != ExitUsage || !strings.Contains(res.stderr, `unknown command "nonsense"`) {
		t.Errorf("unknown subcommand: %+v", res)
	}
}

func TestPanicIsNotUsage(t *testing.T) {
	res := run(context.Background(), testApp(func(*cli.Context) error { panic("boom") }))
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	if res.code != ExitInternal || !strings.Contains(res.stderr, "run_test.go") ||
		!strings.HasPrefix(lines[len(lines)-1], "cfs-test: internal error") || !strings.Contains(lines[len(lines)-1], "boom") {
		t.Errorf("panic: %d\n%s", res.code, res.stderr)
	}
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := run(ctx, testApp(func(c *cli.Context) error { return fmt.Errorf("fetching: %w", c.Context.Err()) }))
	if res.code != ExitInterrupted || res.stderr != "cfs-test: interrupted\n" {
		t.Errorf("%+v", res)
	}
}

func TestVersionAndHelp(t *testing.T) {
	ok := func(*cli.Context) error { return nil }
	res := run(context.Background(), testApp(ok), "--version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "cfs-test version ") || !strings.Contains(res.stdout, "go1.") {
		t.Errorf("--version: %+v", res)
	}
	for _, args := range [][]string{{"--help"}, {"sub", "--help"}} {
		res = run(context.Background(), testApp(ok), args...)
		if res.code != 0 || !strings.Contains(res.stdout, "EXIT STATUS:") {
			t.Errorf("%v: %+v", args, res)
		}
		for _, e := range ExitCodes {
			if !strings.Contains(res.stdout, fmt.Sprintf("%-4d %s", e.Code, e.Meaning)) {
				t.Errorf("%v lacks exit status %d", args, e.Code)
			}
		}
		if strings.Contains(res.stdout, "man-page") {
			t.Errorf("%v shows the hidden --man-page", args)
		}
	}
	// --version is the app's; a subcommand may have its own (cfs-image mkfs --version 1).
	app := &cli.App{Name: "cfs-test", Commands: []*cli.Command{{Name: "mkfs", Flags: []cli.Flag{&cli.IntFlag{Name: "version"}},
		Action: func(c *cli.Context) error { fmt.Fprint(c.App.Writer, c.Int("version")); return nil }}}}
	if res := run(context.Background(), app, "mkfs", "--version", "7"); res.code != 0 || res.stdout != "7" {
		t.Errorf("subcommand --version: %+v", res)
	}
}

// A relative path flag becomes absolute before the action sees it (a
// relative --repo used to end up in object lists as a relative src).
func TestPathFlagsAbsolute(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	action := func(c *cli.Context) error {
		got = []string{c.String("sysroot"), c.String("repo"), c.String("output"), c.String("root"), ComposefsRepo(c), OstreeRepo(c)}
		return nil
	}
	if res := run(context.Background(), testApp(action), "--sysroot", "sr", "--repo", "../r", "--output", "out", "sub", "--root", "x/y"); res.code != 0 {
		t.Fatalf("%+v", res)
	}
	want := []string{filepath.Join(cwd, "sr"), filepath.Join(filepath.Dir(cwd), "r"), "out", filepath.Join(cwd, "x/y"), filepath.Join(filepath.Dir(cwd), "r"), filepath.Join(filepath.Dir(cwd), "r")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if res := run(context.Background(), testApp(action), "--repo", "-"); res.code != 0 || got[1] != "-" {
		t.Errorf("--repo -: %q %+v", got[1], res)
	}
	if res := run(context.Background(), testApp(action), "--sysroot", "sr"); res.code != 0 || got[4] != filepath.Join(cwd, "sr", "composefs") {
		t.Errorf("default repo under a relative sysroot: %q", got[4])
	}
}

func TestSummaryWriter(t *testing.T) {
	action := func(c *cli.Context) error { return PrintJSON(c, map[string]int{"objects": 3}) }
	if res := run(context.Background(), testApp(action)); res.stdout != "{\"objects\":3}\n" || res.stderr != "" {
		t.Errorf("no list: %+v", res)
	}
	if res := run(context.Background(), ListOnStdout(testApp(action))); res.stderr != "{\"objects\":3}\n" || res.stdout != "" {
		t.Errorf("list on stdout: %+v", res)
	}
}
