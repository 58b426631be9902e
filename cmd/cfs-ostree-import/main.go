// Command cfs-ostree-import: write the ostree dirtree, dirmeta and commit objects for an annotated object list and set the ref.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "cfs-ostree-import",
		Usage: "write the ostree dirtree, dirmeta and commit objects for an annotated object list and set the ref",
		Action: func(*cli.Context) error {
			return cli.Exit("cfs-ostree-import: not implemented yet (issue #5)", 2)
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
