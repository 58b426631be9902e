package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/reflink"
)

// runCStorage is --to containers-storage (lib/clone.ToContainersStorage).
func runCStorage(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("cfs-clone: unexpected arguments %v; the object list is read from stdin", c.Args().Slice())
	}
	opts := clone.CStorageOptions{Names: c.StringSlice("name"), Repo: c.String("repo")}
	if s := c.String("reflink"); s != "" {
		p, err := reflink.ParsePolicy(s)
		if err != nil || p == reflink.Never {
			return cliutil.Usage("cfs-clone: --reflink=%s: want always or auto", s)
		}
		opts.Policy = p
	}
	root := c.String("root")
	if root == "" {
		root = cstorage.DefaultGraphRoot(c.String("sysroot"))
	}
	store, err := cstorage.Open(root, c.String("runroot"))
	if err != nil {
		return err
	}
	defer store.Close()
	sum, err := clone.ToContainersStorage(c.Context, store, os.Stdin, os.Stdout, opts)
	if err != nil {
		return err
	}
	switch {
	case c.Bool("json"):
		b, _ := json.Marshal(sum)
		fmt.Fprintln(os.Stderr, string(b))
	case !c.Bool("quiet"):
		fmt.Fprintln(os.Stderr, "cfs-clone: "+sum.String())
	}
	return nil
}
