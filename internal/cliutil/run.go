package cliutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// interruptGrace is how long a command may take to stop after SIGINT or
// SIGTERM before it is ended anyway: commands that watch the context
// release their locks and say what they stopped; the others (and a second
// signal) end as the signal would have ended them. Every store write is
// crash-safe, so ending early loses nothing.
const interruptGrace = 10 * time.Second

func init() {
	// -v is --verbose in cfs-status; --version has no short form anywhere.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit"}
}

// Main runs app as the process: os.Args, stdin/stdout/stderr, SIGINT and
// SIGTERM; it does not return.
func Main(app *cli.App) {
	// An unrecovered panic in a goroutine other than the command's own
	// would end the process with status 2, the usage status. With
	// "crash", Go prints the stacks and raises SIGABRT instead.
	debug.SetTraceback("crash")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
		time.AfterFunc(interruptGrace, func() {
			fmt.Fprintf(os.Stderr, "%s: interrupted\n", app.Name)
			os.Exit(ExitInterrupted)
		})
	}()
	os.Exit(Run(ctx, app, os.Args))
}

// Run runs app with args (args[0] is the program name) under ctx, prints
// an error as one line on app.ErrWriter, and returns the exit status.
// Tests call it in process with their own Reader, Writer and ErrWriter.
func Run(ctx context.Context, app *cli.App, args []string) int {
	Setup(app)
	if f, ok := app.Writer.(*os.File); ok && app.Metadata[listOnStdout] == true {
		growListPipe(f)
	}
	err := runRecover(ctx, app, args)
	if err == nil {
		return ExitOK
	}
	var pan *PanicError
	if errors.As(err, &pan) {
		fmt.Fprintf(app.ErrWriter, "panic: %v\n\n%s\n", pan.Value, pan.Stack)
	}
	fmt.Fprintln(app.ErrWriter, message(ctx, app.Name, err))
	return ExitStatus(ctx, err)
}

func runRecover(ctx context.Context, app *cli.App, args []string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return app.RunContext(ctx, args)
}

const setupDone = "cliutil.setup"

// Setup gives app the conventions of docs/cli.md: --version, the EXIT
// STATUS section in --help, usage errors as exit status 2, path flags made
// absolute before the action runs, and the hidden --man-page flag. Run
// calls it; calling it again does nothing.
func Setup(app *cli.App) {
	if app.Metadata == nil {
		app.Metadata = map[string]any{}
	}
	if app.Metadata[setupDone] != nil {
		return
	}
	app.Metadata[setupDone] = true
	if app.Reader == nil {
		app.Reader = os.Stdin
	}
	if app.Writer == nil {
		app.Writer = os.Stdout
	}
	if app.ErrWriter == nil {
		app.ErrWriter = os.Stderr
	}
	if app.Version == "" {
		app.Version = Version()
	}
	// urfave/cli would call os.Exit itself for a cli.ExitCoder.
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.OnUsageError = onUsageError
	app.CustomAppHelpTemplate = cli.AppHelpTemplate + "\nEXIT STATUS:\n" + exitStatusHelp("   ")
	app.Flags = append(app.Flags, &cli.BoolFlag{Name: manPageFlag, Hidden: true, Usage: "print the man page (roff) and exit"})

	action := app.Action
	if action == nil {
		action = dispatch
	}
	app.Action = func(c *cli.Context) error {
		if c.Bool(manPageFlag) {
			page, err := ManPage(c.App)
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, page)
			return err
		}
		if err := absPaths(c); err != nil {
			return err
		}
		return action(c)
	}
	setupCommands(app.Commands)
}

func setupCommands(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		if cmd.CustomHelpTemplate == "" {
			cmd.CustomHelpTemplate = cli.CommandHelpTemplate + "\nEXIT STATUS:\n" + exitStatusHelp("   ")
		}
		if action := cmd.Action; action != nil {
			cmd.Action = func(c *cli.Context) error {
				if err := absPaths(c); err != nil {
					return err
				}
				return action(c)
			}
		}
		setupCommands(cmd.Subcommands)
	}
}

// dispatch is the action of a command made only of subcommands: urfave/cli
// would print "No help topic" with status 3 for an unknown one.
func dispatch(c *cli.Context) error {
	if c.Args().Present() {
		return Usage("unknown command %q (see --help)", c.Args().First())
	}
	return cli.ShowAppHelp(c)
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return Usage("%v (see --help)", err)
}

// absPaths makes every *cli.PathFlag value of the command line absolute, in
// this command and its parents, before the action runs: a relative --repo
// or --sysroot must name the same directory whatever the tools do with it
// later (write it into an object list, hand it to another process).
// "-" (stdin/stdout) is kept.
func absPaths(c *cli.Context) error {
	for _, ctx := range c.Lineage() {
		if ctx.Command == nil {
			continue
		}
		for _, f := range ctx.Command.Flags {
			pf, ok := f.(*cli.PathFlag)
			if !ok {
				continue
			}
			v := ctx.Path(pf.Name)
			if v == "" || v == "-" || filepath.IsAbs(v) {
				continue
			}
			abs, err := filepath.Abs(v)
			if err != nil {
				return fmt.Errorf("--%s %s: %w", pf.Name, v, err)
			}
			if err := ctx.Set(pf.Name, abs); err != nil {
				return err
			}
		}
	}
	return nil
}

// RunCaptured runs app in process as `NAME args...` with stdin (nothing
// when nil) and returns its exit status and what it wrote, for the tests of
// every command.
func RunCaptured(ctx context.Context, app *cli.App, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	app.Reader, app.Writer, app.ErrWriter = stdin, &out, &errb
	code = Run(ctx, app, append([]string{app.Name}, args...))
	return code, out.String(), errb.String()
}
