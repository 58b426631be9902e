// Command cfs-clone: reflink every object of an object list into another store and write the annotated list to stdout.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/progress"
	"github.com/cfs-project/cfs/lib/reflink"
)

const description = `cfs-clone reads an object list (docs/stream.md) on stdin, puts every object
into the store named by --to, and writes the same list to stdout with the new
store's ids added. The list passes through unchanged otherwise, and its end
record is written only when every object is in place.

--to ostree: each regular file becomes an ostree file object in a bare or
bare-user repository, with the file's bytes shared with its composefs object
(FICLONE) and the entry's owner, mode and xattrs on the new inode; symlinks
and files of 64 bytes or less are written from the list. Before cloning, the
bytes of src are checked against the entry's composefs fs-verity id. Objects
are never hardlinked. Then run cfs-ostree-import to write the commit:

  cfs-pull docker://quay.io/org/os:42 | cfs-clone --to ostree | cfs-ostree-import

--reflink=always fails (before writing anything) where extents cannot be
shared; --reflink=auto copies the bytes there instead. Without the flag,
always is used where the repository's filesystem supports reflinks and auto
elsewhere. A summary goes to stderr (--json for a machine-readable one).

--to composefs (from containers-storage) is not implemented yet.`

func main() {
	cliutil.Main(&cli.App{
		Name:        "cfs-clone",
		Usage:       "reflink every object of an object list into another store and write the annotated list to stdout",
		UsageText:   "cfs-clone --to ostree [options] < list > annotated-list",
		Description: description,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "store to clone into: `ostree` (composefs: not implemented yet)"},
			cliutil.SysrootFlag,
			&cli.StringFlag{Name: "repo", Usage: "ostree repository `DIR` (default <sysroot>/ostree/repo); must exist"},
			&cli.StringFlag{Name: "reflink", Usage: "`always` (fail where extents cannot be shared) or auto (copy there); default: always if the repository's filesystem supports reflinks, else auto"},
			&cli.IntFlag{Name: "jobs", Usage: "files digested and cloned at once (default: number of CPUs)"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as one JSON object on stderr"},
			&cli.IntFlag{Name: "progress-fd", Usage: "write bootc-style JSON progress lines to file descriptor `N` (>= 3)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no summary on stderr (errors still go there)"},
		},
		Action: run,
	})
}

func run(c *cli.Context) error {
	switch c.String("to") {
	case "ostree":
	case "composefs":
		return cliutil.Usage("cfs-clone: --to composefs is not implemented yet (only --to ostree is)")
	case "":
		return cliutil.Usage("cfs-clone: --to is required (ostree)")
	default:
		return cliutil.Usage("cfs-clone: --to %q: want ostree", c.String("to"))
	}
	if c.NArg() != 0 {
		return cliutil.Usage("cfs-clone: unexpected arguments %v; the object list is read from stdin", c.Args().Slice())
	}
	var opts clone.Options
	if s := c.String("reflink"); s != "" {
		p, err := reflink.ParsePolicy(s)
		if err != nil || p == reflink.Never {
			return cliutil.Usage("cfs-clone: --reflink=%s: want always or auto", s)
		}
		opts.Policy = p
	}
	opts.Workers = c.Int("jobs")
	rep, err := cliutil.Progress(c, true)
	if err != nil {
		return err
	}
	defer rep.Done()
	opts.Progress = func(s *clone.Summary, done int64) {
		rep.Progress(progress.Bytes{Task: "clone", Description: "Cloning objects into ostree", ID: "ostree", Bytes: done, Steps: s.Entries}, false, "")
	}

	repoPath := c.String("repo")
	if repoPath == "" {
		repoPath = filepath.Join(c.String("sysroot"), "ostree", "repo")
	}
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return fmt.Errorf("%w (create it with `ostree init --repo=%s --mode=bare` or `ostree admin init-fs`)", err, repoPath)
	}
	// Closing releases the repo lock; only after the list is written.
	defer repo.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := clone.ToOstree(ctx, repo, os.Stdin, os.Stdout, opts)
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
