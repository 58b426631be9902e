// Command cfs-status: show the host's deployments and how its image stores are shared.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "cfs-status",
		Usage: "show the host's deployments and how its image stores are shared",
		Action: func(*cli.Context) error {
			return cli.Exit("cfs-status: not implemented yet (issue #6)", 2)
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
