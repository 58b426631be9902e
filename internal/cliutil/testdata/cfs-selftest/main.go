// Command cfs-selftest exercises cliutil.Main as a process: exit statuses
// for panics, signals and usage errors that only a real process shows.
package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func main() {
	cliutil.Main(&cli.App{
		Name:  "cfs-selftest",
		Usage: "exercise the runner",
		Flags: []cli.Flag{cliutil.SysrootFlag},
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "ok":
				fmt.Fprintln(c.App.Writer, c.String("sysroot"))
				return nil
			case "panic":
				panic("boom")
			case "goroutine-panic":
				go func() { panic("boom in a goroutine") }()
				time.Sleep(time.Minute)
				return nil
			case "wait":
				// Watches the context, as cfs-pull and cfs-clone do.
				fmt.Fprintln(c.App.Writer, "waiting")
				select {
				case <-c.Context.Done():
					return c.Context.Err()
				case <-time.After(time.Minute):
					return errors.New("no signal came")
				}
			case "ignore":
				// Does not watch the context: ended after the grace period
				// or by a second signal.
				fmt.Fprintln(c.App.Writer, "waiting")
				time.Sleep(time.Minute)
				return nil
			}
			return cliutil.Usage("want ok, panic, goroutine-panic, wait or ignore")
		},
	})
}
