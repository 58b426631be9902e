package cliutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testpty"
)

var selftest string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cliutil-test-")
	if err != nil {
		panic(err)
	}
	bins, err := testbin.Build(dir, "github.com/cfs-project/cfs/internal/cliutil/testdata/cfs-selftest")
	if err != nil {
		panic(err)
	}
	selftest = bins["cfs-selftest"]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// start runs cfs-selftest and waits until it has printed its first line
// when waitLine is set.
func start(t *testing.T, waitLine bool, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(selftest, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if waitLine {
		buf := make([]byte, 8)
		if _, err := out.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	return cmd, &errb
}

func wait(t *testing.T, cmd *exec.Cmd) syscall.WaitStatus {
	t.Helper()
	err := cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func TestProcessStatuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"ok"}, ExitOK},
		{[]string{"--bogus"}, ExitUsage},
		{[]string{"what"}, ExitUsage},
		{[]string{"panic"}, ExitInternal},
	} {
		cmd, errb := start(t, false, tc.args...)
		if ws := wait(t, cmd); ws.Signaled() || ws.ExitStatus() != tc.code {
			t.Errorf("%v: %v, want status %d\n%s", tc.args, ws, tc.code, errb)
		}
	}
}

// Go ends a process with status 2 for a panic nobody recovers, the usage
// status; Main turns it into SIGABRT.
func TestGoroutinePanicAborts(t *testing.T) {
	// No core file from the child (inherited limit).
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		t.Fatal(err)
	}
	cmd, errb := start(t, false, "goroutine-panic")
	ws := wait(t, cmd)
	if !ws.Signaled() || ws.Signal() != unix.SIGABRT || !strings.Contains(errb.String(), "boom in a goroutine") {
		t.Errorf("goroutine panic: %v\n%s", ws, errb)
	}
}

func TestSignals(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		cmd, errb := start(t, true, "wait")
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if ws := wait(t, cmd); ws.Signaled() || ws.ExitStatus() != ExitInterrupted || errb.String() != "cfs-selftest: interrupted\n" {
			t.Errorf("%v: %v %q", sig, ws, errb)
		}
	}
	// A command that does not watch its context: a second signal ends it
	// as the signal does.
	cmd, _ := start(t, true, "ignore")
	begin := time.Now()
	cmd.Process.Signal(os.Interrupt)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	if ws := wait(t, cmd); !ws.Signaled() || ws.Signal() != syscall.SIGINT || time.Since(begin) > interruptGrace {
		t.Errorf("second signal: %v after %v", ws, time.Since(begin))
	}
}

// ListInput refuses a terminal on stdin instead of waiting for a list
// nobody types.
func TestListInputTerminal(t *testing.T) {
	pts := testpty.Open(t)
	read := func(c *cli.Context) error {
		_, err := ListInput(c)
		return err
	}
	app := testApp(read)
	var out, errb bytes.Buffer
	app.Reader, app.Writer, app.ErrWriter = pts, &out, &errb
	if code := Run(t.Context(), app, []string{"cfs-test"}); code != ExitUsage || !strings.Contains(errb.String(), "stdin is a terminal") {
		t.Errorf("terminal: %d %q", code, errb.String())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Close()
	app = testApp(read)
	app.Reader, app.Writer, app.ErrWriter = r, &out, &errb
	if code := Run(t.Context(), app, []string{"cfs-test"}); code != 0 {
		t.Errorf("pipe: %d %q", code, errb.String())
	}
}
