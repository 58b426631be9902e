package cliutil

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/lib/sysroot"
)

// HostFlags say where the running system's transient facts are: which
// deployment is booted (the kernel command line) and which is staged
// (/run). cfs-status and cfs-fsck read a host the same way (LoadHost).
func HostFlags() []cli.Flag {
	return []cli.Flag{
		&cli.PathFlag{Name: "cmdline", Usage: "kernel command line `FILE` naming the booted deployment (default /proc/cmdline for /sysroot, none otherwise)"},
		&cli.PathFlag{Name: "run-dir", Usage: "the running system's /run `DIR`, where staged deployments are announced (default /run for /sysroot, none otherwise)"},
		&cli.PathFlag{Name: "esp", Usage: "mounted EFI system partition `DIR` holding systemd-boot entries (composefs hosts)"},
	}
}

// LoadHost reads the host at --sysroot with HostFlags. For the running
// host (/sysroot) the booted and staged deployments come from
// /proc/cmdline and /run unless the flags say otherwise; for any other
// --sysroot neither is read unless the flags say where, so a mounted image
// is never confused with the running system.
func LoadHost(c *cli.Context) (*sysroot.Host, error) {
	root := c.String("sysroot")
	opts := sysroot.Options{RunDir: c.String("run-dir"), ESP: c.String("esp")}
	cmdlineFile := c.String("cmdline")
	if root == DefaultSysroot {
		if cmdlineFile == "" {
			cmdlineFile = "/proc/cmdline"
		}
		if opts.RunDir == "" {
			opts.RunDir = "/run"
		}
	}
	if cmdlineFile != "" {
		data, err := os.ReadFile(cmdlineFile)
		if err != nil {
			return nil, fmt.Errorf("reading kernel command line: %w", err)
		}
		opts.Cmdline = string(data)
	}
	return sysroot.Load(root, opts)
}
