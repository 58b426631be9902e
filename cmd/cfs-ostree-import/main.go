// Command cfs-ostree-import: write the ostree dirtree, dirmeta and commit objects for an annotated object list and set the ref.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

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
	cliutil.Main(&cli.App{
		Name:        "cfs-ostree-import",
		Usage:       "write the ostree dirtree, dirmeta and commit objects for an annotated object list and set the ref",
		UsageText:   "cfs-ostree-import [options] < annotated-list",
		Description: description,
		Flags: []cli.Flag{
			cliutil.SysrootFlag,
			&cli.StringFlag{Name: "repo", Usage: "ostree repository `DIR` (default <sysroot>/ostree/repo); the one cfs-clone wrote to"},
			&cli.StringFlag{Name: "ref", Usage: "set `REF` instead of ostree/container/image/<escaped image reference>"},
			&cli.StringFlag{Name: "imgref", Usage: "name the ref after image reference `REF` instead of the list's source"},
			&cli.BoolFlag{Name: "json", Usage: "print commit, ref, content checksum and counts as JSON on stdout"},
		},
		Action: run,
	})
}

func run(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("cfs-ostree-import: unexpected arguments %v; the object list is read from stdin", c.Args().Slice())
	}
	repoPath := c.String("repo")
	if repoPath == "" {
		repoPath = filepath.Join(c.String("sysroot"), "ostree", "repo")
	}
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return err
	}
	defer repo.Close()
	res, err := ostreeimport.Import(c.Context, repo, os.Stdin, ostreeimport.Options{Ref: c.String("ref"), ImageReference: c.String("imgref")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
		return nil
	}
	fmt.Println(res.Commit)
	return nil
}
