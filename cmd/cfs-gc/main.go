// Command cfs-gc: remove what no deployment of a bootc host pins, in the
// composefs repository and bootc's containers-storage.
package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/gc"
)

func main() {
	// containers-storage re-executes this binary to remove layers.
	if reexec.Init() {
		return
	}
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:      "cfs-gc",
		Usage:     "remove what no deployment pins, from the composefs repository and bootc's containers-storage",
		UsageText: "cfs-gc [--sysroot DIR] [--dry-run] [--json] [--cmdline FILE] [--run-dir DIR] [--esp DIR]",
		Description: `Roots are the images of every deployment (booted, staged, rollback and any
other, on ostree and composefs-native hosts), every tag that is not
localhost/bootc-* (someone else's), and containers-storage images whose ID is
the config digest of a pinned image (by ID, not by name).

cfs-gc re-creates the bootc tag of a pinned image that lost it, removes the
localhost/bootc-* tags of images nothing pins, removes from bootc's
containers-storage the host images no root holds (images it cannot tell as
bootc's, such as logically bound ones, stay), and sweeps the composefs
repository as composefs-rs does: streams and images reached from the refs,
and the objects they name, stay; everything else in objects/XX/ goes, then
the symlinks left broken. The ostree repository is left to
'ostree admin cleanup'.

It holds the composefs repository lock exclusively while it works, as
composefs-rs's gc does: a cfs-pull running when it starts finishes first, one
started meanwhile waits. --dry-run takes the lock shared and removes nothing.`,
		Flags: append([]cli.Flag{
			cliutil.SysrootFlag,
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be removed; remove nothing"},
			cliutil.JSONFlag,
			&cli.PathFlag{Name: "root", Usage: "containers-storage graph root `DIR` (default <sysroot>/ostree/bootc/storage)"},
			&cli.PathFlag{Name: "runroot", Usage: "containers-storage run root `DIR` (default /run/cfs/storage)"},
		}, cliutil.HostFlags()...),
		Action: run,
	}
}

func run(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	h, err := cliutil.LoadHost(c)
	if err != nil {
		return err
	}
	res, err := gc.Collect(h, gc.Options{DryRun: c.Bool("dry-run"), GraphRoot: c.String("root"), RunRoot: c.String("runroot")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliutil.PrintJSON(c, res)
	}
	printHuman(c.App.Writer, res)
	return nil
}

// printHuman prints composefs-rs's lines (cfsctl gc) with ours around them.
func printHuman(w io.Writer, r *gc.Result) {
	verb := "Removed"
	if r.DryRun {
		fmt.Fprintln(w, "Dry run (no files deleted):")
		verb = "Would remove"
	}
	fmt.Fprintf(w, "Live images: %d (pinned by deployments)\n", len(r.Live))
	for _, u := range r.Unknown {
		fmt.Fprintf(w, "Warning: %s; its image is not protected\n", u)
	}
	for _, t := range r.Tagged {
		fmt.Fprintf(w, "Tagged %s (a pinned image had lost its tag)\n", t)
	}
	for _, t := range r.Untagged {
		fmt.Fprintf(w, "Untagged %s\n", t)
	}
	for _, im := range r.ContainersStorage {
		names := "no names"
		if len(im.Names) > 0 {
			names = strings.Join(im.Names, ", ")
		}
		fmt.Fprintf(w, "%s containers-storage image %s (%s), %d layer(s)\n", verb, im.ID, names, im.Layers)
	}
	fmt.Fprintf(w, "Objects: %d removed (%d bytes)\n", r.ObjectsRemoved, r.ObjectsBytes)
	if r.ImagesPruned > 0 || r.StreamsPruned > 0 {
		fmt.Fprintf(w, "Pruned symlinks: %d images, %d streams\n", r.ImagesPruned, r.StreamsPruned)
	}
}
