// Command cfs-pull: fetch a container image into the composefs repository or containers-storage and write its object list to stdout.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "cfs-pull",
		Usage: "fetch a container image into the composefs repository or containers-storage and write its object list to stdout",
		Action: func(*cli.Context) error {
			return cli.Exit("cfs-pull: not implemented yet (issue #4)", 2)
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
