// Command cfs-status shows a bootc host's deployments and the state of its
// unified storage, in bootc status's own format, plus what only cfs can
// tell: where the stores are and how much of them shares disk extents.
package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/hoststatus"
	"github.com/cfs-project/cfs/lib/sysroot"
)

func main() {
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:      "cfs-status",
		Usage:     "show the host's deployments and how its image stores are shared",
		UsageText: "cfs-status [--sysroot DIR] [--cmdline FILE] [--run-dir DIR] [--esp DIR] [--json] [--verbose]\n   cfs-status install-config [--root DIR] [--json]\n   cfs-status [--sysroot DIR] host-kind",
		Description: `Reads the physical root (default /sysroot; a disk image mounted anywhere works too)
and prints the staged, booted and rollback deployments the way "bootc status" does,
with bootc's "Storage:" line for unified storage:

  Storage: ostree-composefs-bound        ostree commits are made from the composefs repo
  Storage: unified (enabled)             containers-storage, composefs and ostree share objects
  Storage: unified (enabled-with-copy)   the same, copying where reflinks are refused

Nothing is printed on hosts where unified storage is off. --json prints bootc's
JSON (canonical: compact, sorted keys) for the fields cfs can read from disk,
including status.storage = {"unified": ..., "ostreeComposefsBound": ...}.

The booted deployment is the one the kernel command line names (ostree= or
composefs=). For the running host that is /proc/cmdline and the staged deployment
is announced under /run; for any other --sysroot neither is read unless
--cmdline / --run-dir say where, so a mounted image is never confused with the
running system. On a composefs-native host with a run directory, only the
deployment /run/composefs/staged-deployment names is staged, as for bootc:
staged entries left from before a reboot without finalize are not shown
(cfs-gc keeps their images all the same). Without one (a disk image), the staged
entries (loader/entries.staged, grub2/user.cfg.staged) say it.

--verbose adds rows bootc shows in verbose mode (state root, deploy serial, commit,
fs-verity) and a "Stores:" section: the path of each store, whether the filesystem
supports reflinks, and how many bytes of the composefs and ostree objects lie in
extents shared with other files (FIEMAP) versus held alone. It reads every object,
so it is bounded by --scan-timeout; a cut-short scan says "partial".`,
		Flags: append(append([]cli.Flag{cliutil.SysrootFlag}, cliutil.HostFlags()...),
			&cli.BoolFlag{Name: "json", Usage: "print bootc's status JSON"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more rows, and where the stores are and how much they share"},
			&cli.DurationFlag{Name: "scan-timeout", Value: 30 * time.Second, Usage: "time limit for --verbose's walk over the object stores"},
		),
		Action: statusAction,
		Commands: []*cli.Command{
			installConfigCommand(),
			hostKindCommand(),
		},
	}
}

func statusAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	h, err := cliutil.LoadHost(c)
	if err != nil {
		return err
	}
	if h.Kind == sysroot.KindComposefs && h.Booted == nil && h.Rollback == nil && len(h.Other) == 0 && c.String("esp") == "" {
		fmt.Fprintf(c.App.ErrWriter, "cfs-status: no bootloader entries under %s/boot; systemd-boot keeps them on the ESP (--esp DIR)\n", h.Root)
	}
	return printStatus(c.Context, c.App.Writer, c.App.ErrWriter, h, c.Bool("json"), c.Bool("verbose"), c.Duration("scan-timeout"))
}

func printStatus(ctx context.Context, w, errw io.Writer, h *sysroot.Host, asJSON, verbose bool, scanLimit time.Duration) error {
	infos, warnings := hoststatus.ImageInfos(h)
	for _, err := range warnings {
		// The deployment is still real; say why its details are missing.
		fmt.Fprintf(errw, "cfs-status: warning: %v\n", err)
	}
	var stores *hoststatus.Stores
	if verbose {
		ctx, cancel := context.WithTimeout(ctx, scanLimit)
		stores = hoststatus.ScanStores(ctx, h.Root)
		cancel()
	}
	if asJSON {
		out, err := hoststatus.CanonicalJSON(hoststatus.Build(h, infos, stores))
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	writeHuman(w, h, infos, verbose)
	if stores != nil {
		writeStoresHuman(w, stores)
	}
	return nil
}
