// Package cliutil is what every cfs command does the same way (docs/cli.md):
// one runner (Main in the binary, Run in tests) that maps errors to exit
// statuses in one place, --version, the EXIT STATUS section of --help, man
// pages, path flags made absolute, the common flags, --json's destination,
// and refusing to read an object list from a terminal.
package cliutil

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/cfs-project/cfs/lib/progress"
)

// DefaultSysroot is where bootc hosts mount the physical root.
const DefaultSysroot = "/sysroot"

// SysrootFlag is --sysroot: the physical root holding the stores.
var SysrootFlag = &cli.PathFlag{
	Name:  "sysroot",
	Value: DefaultSysroot,
	Usage: "physical root `DIR` of the host (or a disk image mounted anywhere)",
}

// JSONFlag is --json. Its meaning is the same in every tool: the
// machine-readable summary, as one JSON object, instead of the human one;
// on stdout, or on stderr for a tool whose stdout is an object list (see
// ListOnStdout and Summary).
var JSONFlag = &cli.BoolFlag{Name: "json", Usage: "print the summary as one JSON object (on stderr where stdout carries the object list)"}

// ProgressFDFlag is --progress-fd: bootc's JSON Lines progress protocol.
var ProgressFDFlag = &cli.IntFlag{Name: "progress-fd", Usage: "write bootc-style JSON progress lines to file descriptor `N` (>= 3)"}

// QuietFlag is --quiet: no progress or summary on stderr; errors still go there.
var QuietFlag = &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress or summary on stderr (errors still go there)"}

// ComposefsRepo returns the composefs repository path: --repo if given,
// else <sysroot>/composefs.
func ComposefsRepo(c *cli.Context) string {
	if r := c.String("repo"); r != "" {
		return r
	}
	return filepath.Join(c.String("sysroot"), "composefs")
}

// OstreeRepo returns the ostree repository path: --repo if given, else
// <sysroot>/ostree/repo.
func OstreeRepo(c *cli.Context) string {
	if r := c.String("repo"); r != "" {
		return r
	}
	return filepath.Join(c.String("sysroot"), "ostree", "repo")
}

const listOnStdout = "cliutil.list-on-stdout"

// ListOnStdout marks app as a tool whose stdout is an object list, so that
// Summary (--json and the human summary) writes to stderr.
func ListOnStdout(app *cli.App) *cli.App {
	if app.Metadata == nil {
		app.Metadata = map[string]any{}
	}
	app.Metadata[listOnStdout] = true
	return app
}

// SummaryWriter is where a tool's summary goes: stdout, or stderr for a
// tool whose stdout is an object list.
func SummaryWriter(c *cli.Context) io.Writer {
	if c.App.Metadata[listOnStdout] == true {
		return c.App.ErrWriter
	}
	return c.App.Writer
}

// PrintJSON writes v as one line of JSON to SummaryWriter(c).
func PrintJSON(c *cli.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(SummaryWriter(c), string(b))
	return err
}

// ListInput returns the reader an object list comes from (App.Reader). If
// that is a terminal, nobody is going to type a list: it returns a usage
// error saying so instead of waiting silently.
func ListInput(c *cli.Context) (io.Reader, error) {
	if IsTerminal(c.App.Reader) {
		return nil, Usage("stdin is a terminal, and %s reads an object list from it: pipe one in (cfs-pull SOURCE | %s …) or redirect a file (< LIST)", c.App.Name, c.App.Name)
	}
	if f, ok := c.App.Reader.(*os.File); ok {
		growListPipe(f)
	}
	return c.App.Reader, nil
}

// IsTerminal tells whether r is a terminal.
func IsTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Progress returns a progress.Reporter for --progress-fd and, unless
// quiet, human lines on ErrWriter.
func Progress(c *cli.Context, quiet bool) (*progress.Reporter, error) {
	var human io.Writer
	if !quiet {
		human = c.App.ErrWriter
	}
	rep, err := progress.New(human, c.Int("progress-fd"))
	if err != nil {
		return nil, Usage("--progress-fd: %v", err)
	}
	return rep, nil
}
