// Command cfs-ostree-import: write the ostree dirtree, dirmeta and commit objects for an annotated object list and set the ref.
package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
)

const description = `cfs-ostree-import reads an object list annotated by cfs-clone --to ostree
(every file and symlink carries its "ostree" checksum) on stdin and writes
the commit bootc would synthesize from the same composefs image:

  - /etc is stored as /usr/etc; /run /tmp /proc /sys /dev are kept as empty
    directories; hardlinks are the same file object under several names;
  - commit metadata ostree.manifest, ostree.manifest-digest,
    ostree.container.image-config, ostree.bootable,
    ostree-ext.composefs-synthesized=true, version (image label) and
    ostree.linux (when /usr/lib/modules/<kver>/vmlinuz exists); the
    timestamp is the image's creation time.

It then sets the ref ostree/container/image/<escaped image reference> (or
--ref) and prints the commit checksum on stdout (--json: a JSON object).
A list without a valid end record (its producer failed) is refused, and no
ref is written; the objects already written are unreferenced and go away
with the next ostree prune.

  cfs-pull docker://quay.io/org/os:42 | cfs-clone --to ostree | cfs-ostree-import`

func main() {
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:        "cfs-ostree-import",
		Usage:       "write the ostree dirtree, dirmeta and commit objects for an annotated object list and set the ref",
		UsageText:   "cfs-ostree-import [options] < annotated-list",
		Description: description,
		Flags: []cli.Flag{
			cliutil.SysrootFlag,
			&cli.PathFlag{Name: "repo", Usage: "ostree repository `DIR` (default <sysroot>/ostree/repo); the one cfs-clone wrote to"},
			&cli.StringFlag{Name: "ref", Usage: "set `REF` instead of ostree/container/image/<escaped image reference>"},
			&cli.StringFlag{Name: "imgref", Usage: "name the ref after image reference `REF` instead of the list's source"},
			&cli.BoolFlag{Name: "json", Usage: "print commit, ref, content checksum and counts as one JSON object on stdout"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected arguments %v; the object list is read from stdin", c.Args().Slice())
	}
	if ref := c.String("ref"); ref != "" {
		if err := ostree.ValidateRefName(ref); err != nil {
			return cliutil.Usage("--ref %q: %v", ref, err)
		}
	}
	in, err := cliutil.ListInput(c)
	if err != nil {
		return err
	}
	repo, err := ostree.Open(cliutil.OstreeRepo(c))
	if err != nil {
		return err
	}
	defer repo.Close()
	res, err := ostreeimport.Import(c.Context, repo, in, ostreeimport.Options{Ref: c.String("ref"), ImageReference: c.String("imgref")})
	switch {
	case errors.Is(err, ostreeimport.ErrNotAnnotated):
		return cliutil.Hint(err, "the object list must come from cfs-clone --to ostree")
	case errors.Is(err, ostreeimport.ErrNoImageReference):
		return cliutil.Hint(err, "give --ref or --imgref")
	case err != nil:
		return err
	}
	if c.Bool("json") {
		return cliutil.PrintJSON(c, res)
	}
	_, err = fmt.Fprintln(c.App.Writer, res.Commit)
	return err
}
