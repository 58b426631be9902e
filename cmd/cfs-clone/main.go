// Command cfs-clone: reflink every object of an object list into another store and write the annotated list to stdout.
package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/cstorage"
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

--to containers-storage writes the image into a containers-storage store
(overlay driver; default <sysroot>/ostree/bootc/storage, or --root) from the
layer streams of the composefs repository the list names: no registry and
no compression. Every file body over 64 bytes is cloned from its composefs
object, and each layer's tar-split is recorded as c/storage records it, so
podman reads the layers back byte for byte (checked against their diff IDs
before the image is recorded). The image ID is the config digest, its names
are --name (repeatable) or the reference podman would give it:

  cfs-pull --from-repo localhost/bootc-sha256:... | cfs-clone --to containers-storage

--to composefs (from containers-storage) is cfs-pull containers-storage:.`

func main() {
	if reexec.Init() {
		return
	}
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return cliutil.ListOnStdout(&cli.App{
		Name:        "cfs-clone",
		Usage:       "reflink every object of an object list into another store and write the annotated list to stdout",
		UsageText:   "cfs-clone --to ostree [options] < list > annotated-list",
		Description: description,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "store to clone into: `ostree` or containers-storage"},
			cliutil.SysrootFlag,
			&cli.PathFlag{Name: "repo", Usage: "ostree repository `DIR` (default <sysroot>/ostree/repo); must exist. With --to containers-storage: the composefs repository (default: the one the list names)"},
			&cli.PathFlag{Name: "root", Usage: "containers-storage graph root `DIR` (default <sysroot>/ostree/bootc/storage)"},
			&cli.PathFlag{Name: "runroot", Usage: "containers-storage run root `DIR` (default " + cstorage.DefaultRunRoot + ")"},
			&cli.StringSliceFlag{Name: "name", Usage: "name the image `NAME` in containers-storage (repeatable; default: the reference podman would give it)"},
			&cli.BoolFlag{Name: "verify", Usage: "with --to containers-storage: read every body for its CRC64 and hash every layer for its diff ID, even from a trusted repository (whose records and layer names are otherwise taken as they are)"},
			&cli.StringFlag{Name: "reflink", Usage: "`always` (fail where extents cannot be shared) or auto (copy there); default: always if the repository's filesystem supports reflinks, else auto"},
			&cli.IntFlag{Name: "jobs", Usage: "files digested and cloned at once (default: 8 per CPU)"},
			cliutil.JSONFlag,
			cliutil.ProgressFDFlag,
			cliutil.QuietFlag,
		},
		Action: run,
	})
}

func run(c *cli.Context) error {
	switch c.String("to") {
	case "containers-storage":
		return runCStorage(c)
	case "ostree":
	case "composefs":
		return cliutil.Usage("--to composefs is not implemented yet (only --to ostree is)")
	case "":
		return cliutil.Usage("--to is required (ostree or containers-storage)")
	default:
		return cliutil.Usage("--to %q: want ostree or containers-storage", c.String("to"))
	}
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected arguments %v; the object list is read from stdin", c.Args().Slice())
	}
	var opts clone.Options
	if s := c.String("reflink"); s != "" {
		p, err := reflink.ParsePolicy(s)
		if err != nil || p == reflink.Never {
			return cliutil.Usage("--reflink=%s: want always or auto", s)
		}
		opts.Policy = p
	}
	opts.Workers = c.Int("jobs")
	in, err := cliutil.ListInput(c)
	if err != nil {
		return err
	}
	rep, err := cliutil.Progress(c, true)
	if err != nil {
		return err
	}
	defer rep.Done()
	opts.Progress = func(s *clone.Summary, done int64) {
		rep.Progress(progress.Bytes{Task: "clone", Description: "Cloning objects into ostree", ID: "ostree", Bytes: done, Steps: s.Entries}, false, "")
	}

	repoPath := cliutil.OstreeRepo(c)
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return cliutil.Hint(err, "create it with `ostree init --repo=%s --mode=bare` or `ostree admin init-fs`", repoPath)
	}
	// Closing releases the repo lock; only after the list is written.
	defer repo.Close()

	sum, err := clone.ToOstree(c.Context, repo, in, c.App.Writer, opts)
	if err != nil {
		return reflinkHint(err)
	}
	return summary(c, sum, sum.String())
}

// reflinkHint adds to an error meaning "extents cannot be shared" which
// flag allows a copy instead.
func reflinkHint(err error) error {
	if errors.Is(err, reflink.ErrRefused) {
		return cliutil.Hint(err, "--reflink=always (the default where reflinks work) never copies; use --reflink=auto to copy the bytes instead")
	}
	return err
}

// summary prints the summary on stderr (stdout is the list): JSON with
// --json, one line unless --quiet.
func summary(c *cli.Context, v any, line string) error {
	switch {
	case c.Bool("json"):
		return cliutil.PrintJSON(c, v)
	case !c.Bool("quiet"):
		_, err := fmt.Fprintln(cliutil.SummaryWriter(c), "cfs-clone: "+line)
		return err
	}
	return nil
}
