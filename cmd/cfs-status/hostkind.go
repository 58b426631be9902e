package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/sysroot"
)

func hostKindCommand() *cli.Command {
	return &cli.Command{
		Name:      "host-kind",
		Usage:     "print \"ostree\" or \"composefs\": how the host at --sysroot deploys",
		UsageText: "cfs-status [--sysroot DIR] host-kind",
		Description: `For scripts: an ostree host has ostree/repo and ostree/deploy; a composefs-native
host deploys EROFS images from composefs/ with state under state/deploy. Neither
is an error naming the directory.`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
			}
			kind, err := sysroot.DetectKind(c.String("sysroot"))
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, kind)
			return nil
		},
	}
}
