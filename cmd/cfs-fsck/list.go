package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/stream"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "validate an object list, or seal one (append its end record)",
		UsageText: "cfs-fsck list [--json] [FILE]\n   cfs-fsck list --seal [FILE] > SEALED",
		Description: `Reads an object list (docs/stream.md) from FILE or stdin and checks every rule
a cfs tool applies when it reads one: the image record, the order of the
entries, each field, and the end record. Exit status 0: the list is valid (a
summary goes to stdout); 1: it is not, and stderr names the first problem and
its line. A list that ends before its end record is invalid here (status 1),
whatever produced it.

--seal is for producers that are not written in Go: give it the image record
and the entries, one JSON object per line, without an end record; it checks
them the same way and writes them to stdout unchanged, followed by the end
record that counts and hashes them. On an error it writes no end record, so
nothing downstream accepts the partial list.

  { echo "$image_record"; my-producer | jq -c -s 'sort_by(.path | ltrimstr("/") | split("/"))[]'; } |
      cfs-fsck list --seal | cfs-clone --to ostree | cfs-ostree-import`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "seal", Usage: "append the end record to a list that has none, after checking it; write the sealed list to stdout"},
			cliutil.JSONFlag,
		},
		Action: list,
	}
}

// listSummary is what `cfs-fsck list --json` prints for a valid list.
type listSummary struct {
	Valid          bool   `json:"valid"`
	Entries        int64  `json:"entries"`
	Bytes          int64  `json:"bytes"`
	SHA256         string `json:"sha256"`
	ManifestDigest string `json:"manifestDigest"`
}

func list(c *cli.Context) error {
	if c.NArg() > 1 {
		return cliutil.Usage("give at most one FILE (see --help)")
	}
	var in io.Reader
	if name := c.Args().First(); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	} else {
		var err error
		if in, err = cliutil.ListInput(c); err != nil {
			return err
		}
	}
	if c.Bool("seal") {
		_, err := stream.Seal(c.App.Writer, in)
		return invalid(err)
	}
	r := stream.NewReader(in)
	img, err := r.Image()
	if err != nil {
		return invalid(err)
	}
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return invalid(err)
		}
	}
	end := r.End()
	sum := listSummary{Valid: true, Entries: end.Entries, Bytes: end.Bytes, SHA256: end.SHA256, ManifestDigest: img.ManifestDigest}
	if c.Bool("json") {
		return cliutil.PrintJSON(c, sum)
	}
	_, err = fmt.Fprintf(c.App.Writer, "valid object list: image %s, %d entries, %d bytes before the end record\n", sum.ManifestDigest, sum.Entries, sum.Bytes)
	return err
}

// invalid makes a problem with the list exit status 1: a list that stops
// before its end record is one more way to be invalid here, not the
// failure of an upstream command (status 3) that the pipeline tools report.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	var se *stream.Error
	if errors.As(err, &se) {
		return errors.New(se.Error())
	}
	return err
}
