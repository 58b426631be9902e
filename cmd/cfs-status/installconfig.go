package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/hoststatus"
	"github.com/cfs-project/cfs/lib/installconfig"
)

func installConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "install-config",
		Usage:     "print the merged bootc install configuration cfs acts on",
		UsageText: "cfs-status install-config [--root DIR] [--json]",
		Description: `Merges bootc/install/*.toml from /usr/lib, /usr/local/lib, /etc and /run under
--root with bootc's rules: for one file name the later directory wins, a symlink to
/dev/null masks it, files merge in name order and the last value wins. Only
[install.storage] unified ("disabled", "enabled", "enabled-with-copy") is
interpreted; an invalid value or malformed TOML is an error naming the file.
--json prints {"storage":{"unified":...}} as bootc install print-configuration
would ({} when nothing sets it).`,
		Flags: []cli.Flag{
			&cli.PathFlag{Name: "root", Value: "/", Usage: "root `DIR` of the tree whose install config to read"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
			}
			cfg, err := installconfig.Load(c.String("root"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printInstallConfigJSON(c.App.Writer, cfg)
			}
			printInstallConfig(c.App.Writer, cfg)
			return nil
		},
	}
}

func printInstallConfigJSON(w io.Writer, cfg *installconfig.Config) error {
	v := map[string]any{}
	if cfg.Unified != "" {
		v["storage"] = map[string]any{"unified": cfg.Unified}
	}
	out, err := hoststatus.CanonicalJSON(v)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

func printInstallConfig(w io.Writer, cfg *installconfig.Config) {
	if len(cfg.Fragments) == 0 {
		fmt.Fprintln(w, "# no install configuration fragments")
	} else {
		fmt.Fprintln(w, "# merged from, in order:")
		for _, f := range cfg.Fragments {
			fmt.Fprintf(w, "#   %s\n", f)
		}
	}
	if cfg.Unified == "" {
		fmt.Fprintln(w, "# unified is not set; bootc's default applies")
	} else {
		fmt.Fprintf(w, "# unified set by %s\n", cfg.UnifiedFrom)
	}
	fmt.Fprintln(w, "[install.storage]")
	fmt.Fprintf(w, "unified = %q\n", cfg.Effective())
}
