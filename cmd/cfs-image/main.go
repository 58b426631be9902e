// Command cfs-image builds, dumps and mounts composefs EROFS images.
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

func main() {
	// A soft bound on the heap, unless GOMEMLIMIT says otherwise: the
	// runtime would let it grow to twice the tree and inodes of a large
	// image between collections. mkfs of a directory lowers it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(128 << 20)
	}
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "cfs-image",
		Usage: "build, dump and mount composefs EROFS images",
		Commands: []*cli.Command{
			{
				Name:      "mkfs",
				Usage:     "build an image from a directory or a dumpfile; print its fs-verity digest",
				ArgsUsage: "SRC IMAGE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "from-dumpfile", Usage: "SRC is a composefs dumpfile (- for stdin)"},
					&cli.StringFlag{Name: "digest-algo", Value: "sha512", Usage: "fs-verity algorithm for object ids and the image digest: sha256 or sha512"},
					&cli.IntFlag{Name: "version", Value: 1, Usage: "composefs format version: 0 or 1"},
					&cli.PathFlag{Name: "objects", Usage: "also store the external files in `DIR` (reflinked when possible)"},
					&cli.BoolFlag{Name: "hardlinks", Usage: "names of one inode in SRC become one inode in the image, as composefs-rs does (default: each name its own inode, as mkcomposefs does)"},
					&cli.BoolFlag{Name: "json", Usage: "print the image path, algorithm and fs-verity digest as one JSON object"},
				},
				Action: mkfs,
			},
			{
				Name:      "dump",
				Usage:     "print an image as a composefs dumpfile",
				ArgsUsage: "IMAGE",
				Action:    dump,
			},
			{
				Name:      "mount",
				Usage:     "mount an image read-only (EROFS + overlayfs)",
				ArgsUsage: "IMAGE MOUNTPOINT",
				Flags: []cli.Flag{
					&cli.PathFlag{Name: "objects", Usage: "objects `DIR` the image's files point into"},
					&cli.BoolFlag{Name: "verity", Usage: "require fs-verity on the objects (overlayfs verity=require)"},
					&cli.BoolFlag{Name: "loop", Usage: "mount the image through a loop device (default: only on kernels that cannot mount the file)"},
				},
				Action: mount,
			},
			{
				Name:      "umount",
				Usage:     "unmount an image mounted by cfs-image mount",
				ArgsUsage: "MOUNTPOINT",
				Action:    umount,
			},
		},
	}
}

func args(c *cli.Context, n int) ([]string, error) {
	if c.NArg() != n {
		return nil, cliutil.Usage("%s: want %d arguments (%s), got %d", c.Command.Name, n, c.Command.ArgsUsage, c.NArg())
	}
	return c.Args().Slice(), nil
}

func mkfs(c *cli.Context) error {
	a, err := args(c, 2)
	if err != nil {
		return err
	}
	src, image := a[0], a[1]
	alg, err := fsverity.ParseAlgorithm(c.String("digest-algo"))
	if err != nil {
		return cliutil.Usage("--digest-algo: %v", err)
	}
	v := c.Int("version")
	if v != 0 && v != 1 {
		return cliutil.Usage("--version must be 0 or 1")
	}
	if c.Bool("from-dumpfile") && c.Bool("hardlinks") {
		return cliutil.Usage("--hardlinks is for a directory; a dumpfile says its hardlinks itself")
	}
	opts := erofs.Options{Version: v, MaxVersion: v}
	var digest []byte
	if c.Bool("from-dumpfile") {
		root, err := parseDumpfile(c, src)
		if err != nil {
			return err
		}
		if digest, err = erofs.WriteFile(image, root, opts, alg); err != nil {
			return err
		}
	} else {
		// Entry by entry, with no tree of the whole directory beside
		// the image's inodes: about 55 MiB at the peak for 119k entries,
		// and little garbage, so a lower bound costs no collections to
		// speak of.
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(96 << 20)
		}
		dopts := erofs.DirOptions{Algorithm: alg, Hardlinks: c.Bool("hardlinks")}
		if objs := c.String("objects"); objs != "" {
			dopts.Object = func(p string, d []byte) error { return erofs.StoreObject(objs, p, d) }
		}
		digest, err = erofs.WriteFileWith(image, alg, func(w io.Writer) error { return erofs.WriteDir(w, src, dopts, opts) })
		if err != nil {
			return err
		}
	}
	if c.Bool("json") {
		return cliutil.PrintJSON(c, struct {
			Image     string `json:"image"`
			Algorithm string `json:"algorithm"`
			Digest    string `json:"digest"`
		}{image, alg.String(), hex.EncodeToString(digest)})
	}
	_, err = fmt.Fprintln(c.App.Writer, hex.EncodeToString(digest))
	return err
}

func parseDumpfile(c *cli.Context, src string) (*erofs.Node, error) {
	if src == "-" {
		if cliutil.IsTerminal(c.App.Reader) {
			return nil, cliutil.Usage("stdin is a terminal, and mkfs --from-dumpfile - reads a dumpfile from it: pipe one in or give a file")
		}
		return dumpfile.Parse(c.App.Reader, "<stdin>")
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return dumpfile.Parse(f, src)
}

func dump(c *cli.Context) error {
	a, err := args(c, 1)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(a[0])
	if err != nil {
		return err
	}
	im, err := erofs.Read(data)
	if err != nil {
		return fmt.Errorf("%s: %w", a[0], err)
	}
	w := bufio.NewWriter(c.App.Writer)
	if err := dumpfile.Write(w, im.Root); err != nil {
		return err
	}
	return w.Flush()
}

func mount(c *cli.Context) error {
	a, err := args(c, 2)
	if err != nil {
		return err
	}
	return erofs.Mount(a[0], a[1], erofs.MountOptions{
		ObjectsDir: c.String("objects"), Verity: c.Bool("verity"), Loop: c.Bool("loop"),
	})
}

func umount(c *cli.Context) error {
	a, err := args(c, 1)
	if err != nil {
		return err
	}
	return erofs.Unmount(a[0])
}
