package main

import (
	"errors"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/reflink"
)

// runCStorage is --to containers-storage (lib/clone.ToContainersStorage).
// cstorageMemoryLimit bounds the Go heap of an export unless GOMEMLIMIT
// says otherwise: left alone, the runtime lets the heap grow to twice its
// live data (the layer streams being read, their zstd windows, the tar-split
// written and a record per body for the check after ApplyStagedLayer)
// between collections. An export runs on a host being upgraded, where
// memory counts more than the few percent of CPU collecting earlier costs.
// It is a soft limit: a larger image still exports, with more collections.
const cstorageMemoryLimit = 96 << 20

func runCStorage(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected arguments %v; the object list is read from stdin", c.Args().Slice())
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cstorageMemoryLimit)
	}
	opts := clone.CStorageOptions{Names: c.StringSlice("name"), Repo: c.String("repo"), Verify: c.Bool("verify")}
	if s := c.String("reflink"); s != "" {
		p, err := reflink.ParsePolicy(s)
		if err != nil || p == reflink.Never {
			return cliutil.Usage("--reflink=%s: want always or auto", s)
		}
		opts.Policy = p
	}
	root := c.String("root")
	if root == "" {
		root = cstorage.DefaultGraphRoot(c.String("sysroot"))
	}
	in, err := cliutil.ListInput(c)
	if err != nil {
		return err
	}
	store, err := cstorage.Open(root, c.String("runroot"))
	if err != nil {
		return err
	}
	defer store.Close()
	sum, err := clone.ToContainersStorage(c.Context, store, in, c.App.Writer, opts)
	if errors.Is(err, clone.ErrNoComposefsRepo) {
		return cliutil.Hint(err, "give one with --repo")
	}
	if err != nil {
		return reflinkHint(err)
	}
	return summary(c, sum, sum.String())
}
