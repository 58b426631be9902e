// Command cfs-deploy writes, stages, finalizes and rolls back deployments
// of composefs-native bootc hosts (lib/nativehost), as bootc does: the
// state directory, boot artifacts and bootloader entries that boot an
// image of the composefs repository with composefs=<id>.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/nativehost"
	"github.com/cfs-project/cfs/lib/sysroot"
)

func main() {
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:      "cfs-deploy",
		Usage:     "stage, finalize and roll back deployments of a composefs-native host",
		UsageText: "cfs-deploy [--sysroot DIR] [--esp DIR] [--boot-dir DIR] [--bootloader grub|systemd] [--cmdline FILE] [--run-dir DIR] stage|finalize|rollback ...",
		Description: `A composefs-native host boots an EROFS image of its composefs repository
(composefs=<id> on the kernel command line) with state/deploy/<id>/ as its
/etc and /var. cfs-deploy writes these the way bootc does, so bootc and cfs
can take turns on one host:

  stage MANIFEST-DIGEST --imgref REF   write the deployment of a stored image
                                       and stage it to boot next
  finalize                             apply the staged deployment: merge /etc,
                                       swap the staged entries in (not one
                                       staged with --download-only)
  unlock                               let a download-only staging be finalized
  rollback                             boot the rollback deployment next

After each, what no entry names any more goes, as bootc's own GC does it:
state/deploy/<id>/ directories, kernel directories and UKIs (never the booted
deployment's). Their images stay in the repository until cfs-gc.

The booted deployment is the one the kernel command line names (--cmdline,
default /proc/cmdline for /sysroot). Entries are GRUB's in <boot-dir>/loader
unless --bootloader systemd (or an ESP with loader/entries) puts them on the ESP.`,
		Flags: []cli.Flag{
			cliutil.SysrootFlag,
			&cli.PathFlag{Name: "cmdline", Usage: "kernel command line `FILE` naming the booted deployment (default /proc/cmdline for /sysroot)"},
			&cli.PathFlag{Name: "run-dir", Usage: "the running system's /run `DIR`, where the staged deployment is announced (default /run for /sysroot, none otherwise)"},
			&cli.PathFlag{Name: "esp", Usage: "mounted EFI system partition `DIR` (systemd-boot entries, UKIs)"},
			&cli.PathFlag{Name: "boot-dir", Usage: "mounted /boot `DIR` of a GRUB host (default <sysroot>/boot)"},
			&cli.StringFlag{Name: "boot-prefix", Usage: "`PATH` of --boot-dir as GRUB sees it: /boot, or / for a /boot partition (default: / when --boot-dir is a filesystem of its own, else /boot)"},
			&cli.StringFlag{Name: "bootloader", Usage: "`grub` or `systemd` (default: systemd when the ESP has loader/entries, else grub)"},
			&cli.StringFlag{Name: "uki-key", Usage: "`KEY` of a systemd-boot entry booting a UKI: efi or uki (default: uki when bootctl --version is systemd 258 or later, as bootc decides)"},
		},
		Commands: []*cli.Command{
			{
				Name:      "stage",
				Usage:     "write the deployment of a stored image and stage it to boot next",
				ArgsUsage: "MANIFEST-DIGEST",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "imgref", Required: true, Usage: "origin image `REF`, e.g. ostree-unverified-image:docker://quay.io/org/os:42"},
					&cli.BoolFlag{Name: "download-only", Usage: "stage with the finalization locked (bootc upgrade --download-only): no finalize applies it until unlock; a reboot forgets it"},
				},
				Action: stage,
			},
			{
				Name:   "unlock",
				Usage:  "let a download-only staging be finalized (bootc upgrade --from-downloaded)",
				Action: unlock,
			},
			{
				Name:  "finalize",
				Usage: "apply the staged deployment (at shutdown): merge /etc, swap the staged entries in",
				Flags: []cli.Flag{
					&cli.PathFlag{Name: "etc", Usage: "the booted deployment's /etc `DIR` (default /etc for /sysroot, else state/deploy/<booted>/etc)"},
				},
				Action: finalize,
			},
			{
				Name:   "rollback",
				Usage:  "make the rollback deployment boot next (a staged one is discarded)",
				Action: rollback,
			},
		},
	}
}

func running(c *cli.Context) bool { return c.String("sysroot") == cliutil.DefaultSysroot }

func host(c *cli.Context) (*nativehost.Host, error) {
	root := c.String("sysroot")
	if kind, err := sysroot.DetectKind(root); err != nil {
		return nil, err
	} else if kind != sysroot.KindComposefs {
		return nil, fmt.Errorf("%s is an ostree host, not a composefs-native one", root)
	}
	h := &nativehost.Host{Root: root, BootDir: c.String("boot-dir"), BootPrefix: c.String("boot-prefix"),
		ESP: c.String("esp"), RunDir: c.String("run-dir"), UKIKey: c.String("uki-key")}
	if k := h.UKIKey; k != "" && k != nativehost.KeyEfi && k != nativehost.KeyUKI {
		return nil, cliutil.Usage("--uki-key %q: want efi or uki", k)
	}
	if h.RunDir == "" && running(c) {
		h.RunDir = "/run"
	}
	switch b := c.String("bootloader"); b {
	case "grub", "systemd":
		h.Bootloader = nativehost.Bootloader(b)
	case "":
		h.Bootloader = nativehost.Grub
		if fi, err := os.Stat(filepath.Join(h.ESP, "loader", "entries")); h.ESP != "" && err == nil && fi.IsDir() {
			h.Bootloader = nativehost.Systemd
		}
	default:
		return nil, cliutil.Usage("--bootloader %q: want grub or systemd", b)
	}
	return h, nil
}

// booted is the deployment id on the kernel command line.
func booted(c *cli.Context) (string, error) {
	file := c.String("cmdline")
	if file == "" {
		if !running(c) {
			return "", cliutil.Usage("which deployment is booted? give --cmdline FILE for a sysroot that is not running")
		}
		file = "/proc/cmdline"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading kernel command line: %w", err)
	}
	id := sysroot.ParseCmdline(string(data)).Composefs
	if id == "" {
		return "", fmt.Errorf("%s: no composefs= argument: not booted from a composefs-native deployment", file)
	}
	return id, nil
}

func stage(c *cli.Context) error {
	if c.NArg() != 1 {
		return cliutil.Usage("stage needs one MANIFEST-DIGEST (see --help)")
	}
	h, err := host(c)
	if err != nil {
		return err
	}
	b, err := booted(c)
	if err != nil {
		return err
	}
	repo, err := composefs.Open(filepath.Join(h.Root, "composefs"))
	if err != nil {
		return err
	}
	defer repo.Close()
	img, err := nativehost.ResolveImage(repo, c.Args().First(), c.String("imgref"))
	if err != nil {
		return err
	}
	stageFn, after := h.Stage, "it boots next after finalize"
	if c.Bool("download-only") {
		stageFn, after = h.StageDownloadOnly, "download-only: it is not finalized until cfs-deploy unlock"
	}
	d, err := stageFn(img, b)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: staged %s (%s %s); %s\n", d.ID, d.OS.Title, d.OS.Version, after)
	fmt.Fprintln(c.App.Writer, d.ID)
	return prune(c, h, b)
}

func finalize(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	h, err := host(c)
	if err != nil {
		return err
	}
	b, err := booted(c)
	if err != nil {
		return err
	}
	etc := c.String("etc")
	if etc == "" {
		etc = filepath.Join(h.Root, "state", "deploy", b, "etc")
		if running(c) {
			etc = "/etc"
		}
	}
	id, err := h.Finalize(b, etc)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(c.App.ErrWriter, "cfs-deploy: nothing staged to finalize")
		return nil
	}
	fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: finalized %s; it boots next\n", id)
	fmt.Fprintln(c.App.Writer, id)
	return prune(c, h, b)
}

func unlock(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	h, err := host(c)
	if err != nil {
		return err
	}
	id, was, err := h.Unlock()
	if err != nil {
		return err
	}
	if !was {
		// bootc's words for the same case.
		fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: staged deployment %s is present and not in download only mode\n", id)
	} else {
		fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: unlocked %s; it is finalized at shutdown (or with cfs-deploy finalize)\n", id)
	}
	fmt.Fprintln(c.App.Writer, id)
	return nil
}

func rollback(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("unexpected argument %q (see --help)", c.Args().First())
	}
	h, err := host(c)
	if err != nil {
		return err
	}
	id, err := h.Rollback()
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("no rollback deployment")
	}
	fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: %s boots next\n", id)
	fmt.Fprintln(c.App.Writer, id)
	keep := ""
	if b, err := booted(c); err == nil {
		keep = b
	}
	return prune(c, h, keep)
}

// prune removes what no entry names; the deployment is in place whatever
// happens here, so a failure is a warning.
func prune(c *cli.Context, h *nativehost.Host, booted string) error {
	removed, err := h.Prune(booted)
	for _, p := range removed {
		fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: removed %s (no entry names it)\n", p)
	}
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "cfs-deploy: warning: cleaning up: %v\n", err)
	}
	return nil
}
