// Command cfs-dedupe: share a classic ostree commit's file objects with the composefs repository, in place.
package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/dedupe"
	"github.com/cfs-project/cfs/lib/ostree"
)

const description = `cfs-dedupe makes the file objects of ostree commits share their disk
extents with the composefs objects of the same bytes, with FIDEDUPERANGE.
It is for commits ostree wrote itself (a host deployed before it was bound to
composefs): a commit cfs synthesized shares its objects already.

Every regular file object over 64 bytes is looked up in the composefs
repository by its fs-verity digest; the kernel then compares the two files
byte for byte and only if they are equal points the ostree object at the
composefs object's blocks. No byte, inode, owner, mode or xattr changes, so
the commit, its checksums and the deployments checked out from it stay as
they are, booted or not. Objects already sharing all their extents are left
alone, so a second run is quick.

  cfs-dedupe --sysroot /sysroot 0123abcd...      # a commit
  cfs-dedupe ostree/container/image/...          # or a ref

With --containers-storage GRAPHROOT, the files of 1 to 64 bytes in the
store's layer directories (GRAPHROOT/overlay/*/diff) come to share the block
of the commit's object with the same bytes too: composefs keeps such files
inline, so they have no composefs object, and each store would otherwise
spend a block on each.

On a filesystem without shared extents (ext4) it fails with status 5 before
changing anything.`

func main() {
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:        "cfs-dedupe",
		Usage:       "share a classic ostree commit's file objects with the composefs repository, in place",
		UsageText:   "cfs-dedupe [--sysroot DIR] [--repo DIR] [--composefs DIR] [--containers-storage GRAPHROOT] [--json] COMMIT|REF...",
		Description: description,
		Flags: []cli.Flag{
			cliutil.SysrootFlag,
			&cli.PathFlag{Name: "repo", Usage: "ostree repository `DIR` (default <sysroot>/ostree/repo)"},
			&cli.PathFlag{Name: "composefs", Usage: "composefs repository `DIR` (default <sysroot>/composefs)"},
			&cli.PathFlag{Name: "containers-storage", Usage: "share the small files of the layers of the containers-storage at `GRAPHROOT` too"},
			cliutil.JSONFlag,
			cliutil.QuietFlag,
		},
		Action: run,
	}
}

type result struct {
	Commit string `json:"commit"`
	dedupe.Stats
	ContainersStorage *dedupe.SmallStats `json:"containersStorage,omitempty"`
}

func run(c *cli.Context) error {
	if c.NArg() == 0 {
		return cliutil.Usage("name at least one COMMIT or REF (see --help)")
	}
	repo, err := ostree.Open(cliutil.OstreeRepo(c))
	if err != nil {
		return err
	}
	defer repo.Close()
	cfsPath := c.String("composefs")
	if cfsPath == "" {
		cfsPath = filepath.Join(c.String("sysroot"), "composefs")
	}
	cfs, err := composefs.Open(cfsPath)
	if err != nil {
		return err
	}
	defer cfs.Close()
	var results []result
	for _, arg := range c.Args().Slice() {
		commit := arg
		if !ostree.ValidChecksum(arg) {
			var ok bool
			commit, ok, err = repo.ResolveRef(arg)
			if err != nil {
				return err
			}
			if !ok {
				return cliutil.Usage("%s: no such commit or ref in %s", arg, repo.Path())
			}
		}
		st, err := dedupe.Commit(c.Context, repo, cfs, commit)
		if err != nil {
			return err
		}
		res := result{Commit: commit, Stats: st}
		if graph := c.String("containers-storage"); graph != "" {
			layers, err := filepath.Glob(filepath.Join(graph, "overlay", "*", "diff"))
			if err != nil {
				return err
			}
			small, err := dedupe.SmallFiles(c.Context, repo, commit, layers)
			if err != nil {
				return err
			}
			res.ContainersStorage = &small
		}
		results = append(results, res)
		if !c.Bool("json") && !c.Bool("quiet") {
			fmt.Fprintf(c.App.Writer, "%s: %s\n", commit, st)
			if res.ContainersStorage != nil {
				fmt.Fprintf(c.App.Writer, "%s: containers-storage: %s\n", commit, res.ContainersStorage)
			}
		}
	}
	if c.Bool("json") {
		for _, r := range results {
			if err := cliutil.PrintJSON(c, r); err != nil {
				return err
			}
		}
	}
	return nil
}
