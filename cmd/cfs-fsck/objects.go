package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/fsck"
)

func objectsCommand() *cli.Command {
	return &cli.Command{
		Name:      "objects",
		Usage:     "check every store's integrity: composefs objects, streams, images and tags; ostree (ostree fsck); pinned containers-storage layers",
		UsageText: "cfs-fsck [--sysroot DIR] objects [--repair] [--json] [--jobs N] [--cmdline FILE] [--run-dir DIR] [--esp DIR]",
		Description: `What bootc's metadata-level check does not do. In the composefs repository:
every object's fs-verity digest against its name (the kernel's measurement where
verity is on, computed otherwise), every stream's and image's references, every
tag's image complete, nothing else in objects/. The ostree repository: the real
'ostree fsck', run at the same time. containers-storage: the layers of the
images deployments pin exist and their diff files give their diff IDs.

Each problem has a stable code (object-digest-mismatch, dangling-stream-ref,
stray-file, missing-layer, ...), a path and the images it affects.

--repair takes the repository lock exclusively, removes stray files, and
restores a corrupt or missing object from the ostree repository or
containers-storage where one holds the same bytes (a reflinked copy); what it
cannot restore needs a re-pull, which the report says.

Exit status 1 when a problem remains; 0 when none was found or all were repaired.`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "repair", Usage: "restore objects from another store, remove stray files"},
			cliutil.JSONFlag,
			&cli.IntFlag{Name: "jobs", Value: 2, Usage: "objects digested in parallel"},
			&cli.PathFlag{Name: "root", Usage: "containers-storage graph root `DIR` (default <sysroot>/ostree/bootc/storage)"},
			&cli.PathFlag{Name: "runroot", Usage: "containers-storage run root `DIR` (default /run/cfs/storage)"},
		}, cliutil.HostFlags()...),
		Action: runObjects,
	}
}

// objectsMemoryLimit is cfs-fsck objects' soft memory limit.
const objectsMemoryLimit = 64 << 20

func runObjects(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	if c.Int("jobs") < 1 {
		return cliutil.Usage("--jobs %d: want 1 or more", c.Int("jobs"))
	}
	h, err := cliutil.LoadHost(c)
	if err != nil {
		return err
	}
	opts := fsck.ObjectsOptions{Repair: c.Bool("repair"), Jobs: c.Int("jobs"), GraphRoot: c.String("root"), RunRoot: c.String("runroot")}
	tty := cliutil.IsTerminal(c.App.ErrWriter)
	if tty {
		opts.Progress = func(n int64) { fmt.Fprintf(c.App.ErrWriter, "\rcfs-fsck: %d objects checked", n) }
	}
	// The collector lets the heap grow to twice what is live by default;
	// while an EROFS image of 100k+ entries is parsed that alone would
	// pass 150 MB. A soft limit keeps it near what is live (GOMEMLIMIT,
	// if set, decides instead).
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(objectsMemoryLimit)
	}
	rep, err := fsck.Objects(h, opts)
	if tty {
		fmt.Fprintln(c.App.ErrWriter)
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := cliutil.PrintJSON(c, rep); err != nil {
			return err
		}
	} else {
		rep.WriteHuman(c.App.Writer)
	}
	if !rep.OK {
		return fmt.Errorf("objects: %d problem(s) remain", len(rep.Problems)-rep.Repaired)
	}
	return nil
}
