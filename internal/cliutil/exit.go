package cliutil

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
)

// Exit statuses. Scripts may rely on every one of them; docs/cli.md and the
// EXIT STATUS section of each --help list them (from ExitCodes).
const (
	ExitOK      = 0
	ExitFailure = 1
	// ExitUsage: the command line is wrong (unknown flag, missing or extra
	// argument, bad flag value); nothing was done.
	ExitUsage = 2
	// ExitTruncated: the object list read on stdin stopped before its end
	// record, or was empty: the command that produced it failed. Nothing
	// from it was committed; look at the first failing command of the pipe.
	ExitTruncated = 3
	// ExitNotRepository: a store path (--repo, <sysroot>/…) holds no
	// repository of the expected kind.
	ExitNotRepository = 4
	// ExitReflinkRefused: --reflink=always (or its default) and the
	// filesystem refused to share extents; --reflink=auto copies instead.
	ExitReflinkRefused = 5
	// ExitInternal: a bug (a Go panic in the command's own goroutine).
	// Go's own status for a panic is 2, the usage status, so the runner
	// recovers it; a panic in another goroutine aborts the process with
	// SIGABRT instead (status 134 in a shell), never 2.
	ExitInternal = 70
	// ExitInterrupted: SIGINT or SIGTERM ended the command (128 + SIGINT,
	// as a shell reports an interrupted command).
	ExitInterrupted = 130
)

// ExitCode documents one exit status.
type ExitCode struct {
	Code    int
	Meaning string
}

// ExitCodes is the table printed in every --help, in the man pages and in
// docs/cli.md.
var ExitCodes = []ExitCode{
	{ExitOK, "success"},
	{ExitFailure, "failure (the message on stderr says what failed)"},
	{ExitUsage, "usage error: bad flag, argument or flag value; nothing was done"},
	{ExitTruncated, "the object list on stdin ended before its end record: the command producing it failed"},
	{ExitNotRepository, "a store path is not a repository of the expected kind"},
	{ExitReflinkRefused, "extents cannot be shared (FICLONE refused) and copying was not allowed"},
	{ExitInternal, "internal error (a bug): a panic, reported with its stack on stderr"},
	{ExitInterrupted, "interrupted by SIGINT or SIGTERM"},
}

// UsageError is an error in how the command was called.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage is an error in how the command was called (exit status 2).
func Usage(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// PanicError is a recovered panic: its value and the stack where it happened.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("internal error (a bug, please report it with the stack above): panic: %v", e.Value)
}

// hinted is an error with advice for the user of this command: the library
// says what happened, the command says which of its flags changes it.
type hinted struct {
	err  error
	hint string
}

func (e *hinted) Error() string { return e.err.Error() + "; " + e.hint }
func (e *hinted) Unwrap() error { return e.err }

// Hint appends advice to err (e.g. "use --reflink=auto to copy the bytes
// instead") without hiding it from errors.Is/As, so its exit status is
// unchanged. A nil err stays nil.
func Hint(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &hinted{err, fmt.Sprintf(format, args...)}
}

// ExitStatus maps the error an action returned to the process exit status.
// It is the one place where error types become exit codes. ctx is the
// context the action ran under: canceled means a signal arrived.
func ExitStatus(ctx context.Context, err error) int {
	var (
		usage *UsageError
		pan   *PanicError
		exit  cli.ExitCoder
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &pan):
		return ExitInternal
	case ctx.Err() != nil:
		// Whatever the error says (context canceled, a broken pipe), the
		// command stopped because it was told to.
		return ExitInterrupted
	case errors.As(err, &usage):
		return ExitUsage
	case errors.Is(err, stream.ErrTruncated):
		return ExitTruncated
	case errors.Is(err, composefs.ErrNotRepository), errors.Is(err, ostree.ErrNotRepository):
		return ExitNotRepository
	case errors.Is(err, reflink.ErrRefused):
		return ExitReflinkRefused
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	return ExitFailure
}

// message is the one line printed on stderr for err, prefixed with the
// command name.
func message(ctx context.Context, name string, err error) string {
	var msg string
	if ctx.Err() != nil && !errors.As(err, new(*PanicError)) {
		msg = "interrupted"
		if !errors.Is(err, context.Canceled) {
			msg += " (" + err.Error() + ")"
		}
	} else {
		msg = err.Error()
	}
	msg = strings.ReplaceAll(strings.TrimSpace(msg), "\n", " ")
	if !strings.HasPrefix(msg, name+":") {
		msg = name + ": " + msg
	}
	return msg
}

// exitStatusHelp is the EXIT STATUS section of --help and the man pages.
func exitStatusHelp(indent string) string {
	var b strings.Builder
	for _, e := range ExitCodes {
		fmt.Fprintf(&b, "%s%-4d %s\n", indent, e.Code, e.Meaning)
	}
	return b.String()
}
