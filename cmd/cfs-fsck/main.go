// Command cfs-fsck: check that the stores of a bootc host agree, and repair what can be re-imported.
package main

import (
	"github.com/urfave/cli/v2"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
)

func main() {
	// --repair writes layers into containers-storage, which re-executes
	// this binary for some operations.
	if reexec.Init() {
		return
	}
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "cfs-fsck",
		Usage: "check that the stores of a bootc host agree, and repair what can be re-imported",
		Flags: []cli.Flag{cliutil.SysrootFlag},
		Commands: []*cli.Command{
			imagesCommand(),
			objectsCommand(),
			listCommand(),
		},
	}
}
