// Command cfs-manpage writes the man page of a shell driver from its --help
// text on stdin (make man); the Go tools print their own with --man-page.
package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func main() {
	cliutil.Main(&cli.App{
		Name:      "cfs-manpage",
		Usage:     "write a shell driver's man page from its --help text on stdin",
		UsageText: "scripts/cfs-upgrade --help | cfs-manpage --name cfs-upgrade --summary TEXT > cfs-upgrade.8",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "the command's `NAME`"},
			&cli.StringFlag{Name: "summary", Usage: "one-line description for the NAME section"},
		},
		Action: func(c *cli.Context) error {
			if c.String("name") == "" || c.String("summary") == "" || c.NArg() > 0 {
				return cliutil.Usage("give --name and --summary, and the --help text on stdin")
			}
			if cliutil.IsTerminal(c.App.Reader) {
				return cliutil.Usage("stdin is a terminal: pipe the command's --help text in")
			}
			help, err := io.ReadAll(c.App.Reader)
			if err != nil {
				return err
			}
			if len(help) == 0 {
				return fmt.Errorf("empty --help text on stdin")
			}
			_, err = io.WriteString(c.App.Writer, cliutil.TextManPage(c.String("name"), c.String("summary"), string(help)))
			return err
		},
	})
}
