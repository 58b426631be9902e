// Package cliutil holds what every cfs command does the same way: the
// --sysroot/--repo flags, and turning an error into one line on stderr and
// an exit status.
package cliutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// DefaultSysroot is where bootc hosts mount the physical root.
const DefaultSysroot = "/sysroot"

// SysrootFlag is --sysroot: the physical root holding the stores.
var SysrootFlag = &cli.StringFlag{
	Name:  "sysroot",
	Value: DefaultSysroot,
	Usage: "physical root of the host (or a disk image mounted anywhere)",
}

// ComposefsRepo returns the composefs repository path: --repo if given,
// else <sysroot>/composefs.
func ComposefsRepo(c *cli.Context) string {
	if r := c.String("repo"); r != "" {
		return r
	}
	return filepath.Join(c.String("sysroot"), "composefs")
}

// Run runs app and exits: 0 on success, the code of a cli.ExitCoder, or 1
// with the error as one line prefixed by the command name.
func Run(app *cli.App) {
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(os.Args)
	if err == nil {
		os.Exit(0)
	}
	code := 1
	var exit cli.ExitCoder
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
	if !strings.HasPrefix(msg, app.Name+":") {
		msg = app.Name + ": " + msg
	}
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(code)
}

// Usage is an error in how the command was called (exit status 2).
func Usage(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
