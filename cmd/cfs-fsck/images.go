package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/fsck"
)

func imagesCommand() *cli.Command {
	return &cli.Command{
		Name:      "images",
		Usage:     "bootc's image check: every pinned image is tagged in composefs and, when unified, present in containers-storage",
		UsageText: "cfs-fsck [--sysroot DIR] images [--repair] [--json] [--cmdline FILE] [--run-dir DIR] [--esp DIR]",
		Description: `The check of "bootc internals fsck images", with its lines and JSON fields, for
the three binding states: disabled (nothing to check), bound-only (each ostree
deployment's commit is synthesized from a tagged, openable composefs image) and
unified (each live composefs-tagged image, and each pinned deployment's, is in
bootc's containers-storage, matched by config digest).

--repair re-creates the localhost/bootc-<manifest digest> tag of every pinned
deployment whose image is still in the composefs repository, then restores each
live image missing from containers-storage from composefs by reflink, named
localhost/bootc-recovered:<12 hex of the config digest>.

Exit status 1 when a check failed (the report says which); 0 when all passed.`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "repair", Usage: "re-tag pinned images and restore missing containers-storage images from composefs"},
			cliutil.JSONFlag,
			&cli.PathFlag{Name: "root", Usage: "containers-storage graph root `DIR` (default <sysroot>/ostree/bootc/storage)"},
			&cli.PathFlag{Name: "runroot", Usage: "containers-storage run root `DIR` (default /run/cfs/storage)"},
		}, cliutil.HostFlags()...),
		Action: runImages,
	}
}

func runImages(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	h, err := cliutil.LoadHost(c)
	if err != nil {
		return err
	}
	opts := fsck.ImagesOptions{Repair: c.Bool("repair"), GraphRoot: c.String("root"), RunRoot: c.String("runroot")}
	if !c.Bool("json") {
		opts.Out = c.App.Writer
	}
	rep, err := fsck.Images(h, opts)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := rep.WriteJSON(c.App.Writer); err != nil {
			return err
		}
	}
	if !rep.OK {
		n := 0
		for _, im := range rep.Images {
			if im.IsLive && len(im.Issues) > 0 {
				n++
			}
		}
		return fmt.Errorf("images: %d image(s) failed the check", n)
	}
	return nil
}
