// Command cfs-fsck: check that the stores of a bootc host agree, and repair what can be re-imported.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "cfs-fsck",
		Usage: "check that the stores of a bootc host agree, and repair what can be re-imported",
		Action: func(*cli.Context) error {
			return cli.Exit("cfs-fsck: not implemented yet (a later issue)", 2)
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
