// Command cfs-fsck: check that the stores of a bootc host agree, and repair what can be re-imported.
package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func main() {
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "cfs-fsck",
		Usage: "check that the stores of a bootc host agree, and repair what can be re-imported",
		Flags: []cli.Flag{cliutil.SysrootFlag},
		Action: func(*cli.Context) error {
			return errors.New("no checks are implemented yet")
		},
	}
}
