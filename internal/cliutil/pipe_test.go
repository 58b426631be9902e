package cliutil

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	n, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestListPipesGrow: a stage reading a list from a pipe, and a stage
// writing one into a pipe, give that pipe a 1 MiB buffer, so that a batch
// of entries does not stall the writer until the reader catches up.
func TestListPipesGrow(t *testing.T) {
	t.Run("stdin", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		w.Close()
		if pipeSize(t, r) >= listPipeSize {
			t.Skip("pipes start at 1 MiB here")
		}
		app := testApp(func(c *cli.Context) error {
			in, err := ListInput(c)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, in)
			return err
		})
		app.Reader, app.Writer, app.ErrWriter = r, io.Discard, io.Discard
		if code := Run(context.Background(), app, []string{app.Name}); code != ExitOK {
			t.Fatalf("exit %d", code)
		}
		if got := pipeSize(t, r); got < listPipeSize {
			t.Errorf("stdin pipe holds %d bytes, want %d", got, listPipeSize)
		}
	})
	t.Run("stdout", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		if pipeSize(t, w) >= listPipeSize {
			t.Skip("pipes start at 1 MiB here")
		}
		for _, list := range []bool{false, true} {
			app := testApp(func(c *cli.Context) error { return nil })
			if list {
				app = ListOnStdout(app)
			}
			app.Reader, app.Writer, app.ErrWriter = nil, w, io.Discard
			if code := Run(context.Background(), app, []string{app.Name}); code != ExitOK {
				t.Fatalf("exit %d", code)
			}
			if got := pipeSize(t, w); (got >= listPipeSize) != list {
				t.Errorf("list on stdout %v: the pipe holds %d bytes", list, got)
			}
		}
	})
}
