// Command cfs-clone: reflink every object of an object list into another store and write the annotated list to stdout.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "cfs-clone",
		Usage: "reflink every object of an object list into another store and write the annotated list to stdout",
		Action: func(*cli.Context) error {
			return cli.Exit("cfs-clone: not implemented yet (issue #5)", 2)
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
