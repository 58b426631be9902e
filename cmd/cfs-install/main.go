// Command cfs-install installs a bootable container image onto a mounted,
// empty physical root as an ostree or a composefs-native bootc host.
package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/install"
	"github.com/cfs-project/cfs/lib/installconfig"
	"github.com/cfs-project/cfs/lib/nativehost"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/reflink"
)

const description = `Installs SOURCE (any containers/image reference: docker://, oci:, oci-archive:,
docker-archive:, dir:, containers-storage:) onto ROOT, a mounted and empty
physical root, the way "bootc install to-filesystem" does. /boot (and an ESP,
for systemd-boot or a UKI) must already be mounted where the caller wants
them; cfs-install does not partition and installs no bootloader binary: an
existing GRUB or systemd-boot reads the entries it writes. ROOT may hold only
lost+found and /boot (with lost+found, efi, EFI, grub or grub2 in it).

Host kind. ROOT becomes a composefs-native host when the image carries a
sealed UKI (a UKI whose .cmdline names composefs=<id>), or with
--composefs-native; an ostree host otherwise.

ostree host: ostree admin init-fs and os-init (stateroot --stateroot), the
image pulled into ROOT/composefs and its commit synthesized from there by
reflink (cfs-pull | cfs-clone --to ostree | cfs-ostree-import, in one
process), then ostree admin deploy with the origin bootc writes
(container-image-reference=ostree-unverified-registry:NAME for docker://,
ostree-unverified-image:TRANSPORT:NAME otherwise; of --source-imgref when
given). The repository is bound to composefs ([composefs] unified=true) from
the first boot, so cfs-upgrade pulls through composefs.

composefs-native host: ROOT/composefs (0700, SHA-512) with the image and its
boot image, state/deploy/<boot image id>/ (etc copied from the image, var ->
../../os/default/var, <id>.origin with container-image-reference =
ostree-unverified-image:docker://NAME or TRANSPORT:NAME, always unverified, as
bootc writes it), composefs/bootc and the ostree/bootc link, the kernel and
initramfs (or the UKI on the ESP) and last the entry: a BLS entry
bootc_<os id>-<version>-1.conf, or for a UKI a systemd-boot entry (efi or uki
key, --uki-key) or a GRUB menuentry in boot/grub2/user.cfg with the ESP's UUID
in grub2/efiuuid.cfg.

Kernel arguments, in bootc's order. Both kinds start with root=UUID=<uuid of
ROOT's filesystem> (or --root-mount-spec), rw, and boot=UUID=<uuid> when
ROOT/boot is a filesystem of its own (--boot-mount-spec). ostree hosts then get
[install] kargs of the install configuration, the image's
/usr/lib/bootc/kargs.d/*.toml (kargs, skipped when match-architectures lacks
this machine), minus the install configuration's [install] karg-deletes
(key=value removes that argument, a bare key every one with that key), then
every --karg. composefs-native hosts, as bootc's composefs
backend: every --karg, composefs=<id>, systemd.mount-extra=<boot>:/boot:auto:ro
for a separate /boot, then the kargs.d arguments not already there; [install]
kargs are not used (a warning says so). A UKI carries its own command line:
--karg with an image that boots a UKI is refused, as bootc refuses it.

UKI addons. Only those named with --uki-addon NAME go on the ESP, into
EFI/Linux/bootc/bootc_composefs-<id>.efi.extra.d/ where systemd-boot loads
them; by default none, as bootc installs none unless asked (and none at
upgrades). A name the image has no addon for is passed over with a warning.

Storage. The merged [install.storage] unified of the image's install
configuration (bootc/install/*.toml under /usr/lib, /usr/local/lib, /etc and
/run), and of this machine's (--host-config-root) when --source-imgref is
given, as bootc merges them, decides: "enabled" or "enabled-with-copy"
installs unified storage from the start (the image also in bootc's
containers-storage, ROOT/ostree/bootc/storage, cloned from the composefs
objects; composefs/bootc.json written last); "disabled" or nothing leaves it
off. "enabled" on a filesystem without reflinks is refused before anything is
written.

Other install configuration keys, from the same merge, as bootc honours them
(an option given wins): [install] stateroot (--stateroot), root-mount-spec and
boot-mount-spec (--root-mount-spec, --boot-mount-spec; "" leaves the argument
out), bootloader (--bootloader; "none" is refused for a composefs-native host,
as bootc refuses it, and changes nothing on an ostree host), and
[install.ostree] bls-append-except-default (the ostree repository's
sysroot.bls-append-except-default). root-fs-type, [install.filesystem], block
and [install.bootupd] are for partitioning and bootloader installation, which
cfs-install does not do, and are not used.

Signatures. The image is always checked against the signature policy
(--signature-policy, else containers/image's search: $CONTAINERS_POLICY_JSON,
~/.config/containers/policy.json, /etc/containers/policy.json,
/usr/share/containers/policy.json; --insecure-policy accepts anything): a
policy that rejects it fails the install with containers/image's reason
before ROOT is written. --enforce-container-sigpolicy, or [install]
enforce-container-sigpolicy = true of the merged install configuration, as
bootc's: a policy whose default is insecureAcceptAnything is refused (only
the default is judged, as bootc judges it: a policy that rejects by default
and accepts one registry unsigned passes), and an ostree host's origin is
ostree-image-signed:TRANSPORT:NAME, so that upgrades enforce the policy too
(a composefs-native host's origin stays unverified, as bootc writes it).
The flag is checked before the pull; the configuration key, read from the
image, right after it, the pulled repository then removed.

Failures. The bootloader entry is the last thing written (then bootc.json):
a failure or a kill before it leaves ROOT without an entry, never an entry
naming something missing. A failure up to the end of the pull and the
checks of the install configuration (a bad value, a refusal) removes the
pulled ROOT/composefs again, leaving ROOT as it was; after a later one,
remove ROOT's contents before trying again.

  cfs-install to-filesystem /mnt/root docker://quay.io/org/os:42
  cfs-install to-filesystem --source-imgref docker://quay.io/org/os:42 /mnt/root oci:/srv/os`

func main() {
	if reexec.Init() {
		return
	}
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:        "cfs-install",
		Usage:       "install a bootable container image onto a mounted root as an ostree or composefs-native host",
		UsageText:   "cfs-install to-filesystem [options] ROOT SOURCE\n   cfs-install print-configuration [--all] [--root DIR]",
		Description: description,
		Commands: []*cli.Command{{
			Name:      "to-filesystem",
			Usage:     "install SOURCE onto the mounted, empty physical root ROOT",
			UsageText: "cfs-install to-filesystem [--composefs-native] [--source-imgref REF] [--karg ARG]... [--bootloader grub|systemd|none] [--uki-addon NAME]... ROOT SOURCE",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "composefs-native", Usage: "make a composefs-native host even without a sealed UKI in the image"},
				&cli.StringFlag{Name: "source-imgref", Usage: "the image `REF` the host follows for upgrades (its origin) when SOURCE is another copy of it; also merges this machine's install configuration"},
				&cli.StringSliceFlag{Name: "karg", Usage: "add kernel argument `ARG` (repeatable; ostree hosts: after the image's kargs.d; composefs-native: before composefs= and kargs.d; refused with a UKI)"},
				&cli.StringFlag{Name: "bootloader", Usage: "where a composefs-native host's entry goes, `BOOTLOADER` grub or systemd; none is refused there, as bootc refuses it (default: [install] bootloader, else systemd when the ESP holds systemd-boot, else grub)"},
				&cli.PathFlag{Name: "esp", Usage: "the mounted EFI system partition `DIR` (default ROOT/boot/efi when it exists)"},
				&cli.StringSliceFlag{Name: "uki-addon", Usage: "put the image's UKI addon `NAME` (its file name without .addon.efi, from a directory below /boot/EFI/Linux or /usr/lib/modules/<kver>) beside the UKI on the ESP (repeatable; none by default, as bootc; composefs-native hosts only)"},
				&cli.StringFlag{Name: "uki-key", Usage: "`KEY` of a systemd-boot entry booting a UKI: efi or uki (default: uki when bootctl --version is systemd 258 or later, as bootc decides)"},
				&cli.StringFlag{Name: "root-mount-spec", Usage: "root= `SPEC` on the kernel command line (default: [install] root-mount-spec, else UUID=<uuid> of ROOT's filesystem; empty: none)"},
				&cli.StringFlag{Name: "boot-mount-spec", Usage: "`SPEC` of the /boot filesystem, given as boot= (default: [install] boot-mount-spec, else UUID=<uuid> when ROOT/boot is a filesystem of its own; empty: none)"},
				&cli.StringFlag{Name: "stateroot", Usage: "ostree stateroot `NAME` (default: [install] stateroot of the install configuration, else default)"},
				&cli.PathFlag{Name: "host-config-root", Value: "/", Usage: "root `DIR` whose bootc/install/*.toml are merged over the image's when --source-imgref is given"},
				&cli.BoolFlag{Name: "insecure-policy", Usage: "accept any image regardless of the signature policy (explicit only)"},
				&cli.BoolFlag{Name: "enforce-container-sigpolicy", Usage: "refuse a signature policy whose default accepts any image, and write an ostree host's origin as ostree-image-signed: (default: [install] enforce-container-sigpolicy)"},
				&cli.PathFlag{Name: "signature-policy", Usage: "signature policy `FILE` instead of /etc/containers/policy.json"},
				&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "require HTTPS and verify certificates for registries"},
				&cli.PathFlag{Name: "authfile", Usage: "registry credentials `FILE` (default: podman's search order)"},
				&cli.PathFlag{Name: "cert-dir", Usage: "`DIR` with certificates for the registry"},
				cliutil.JSONFlag,
				cliutil.ProgressFDFlag,
				cliutil.QuietFlag,
			},
			Action: toFilesystem,
		}, {
			Name:      "print-configuration",
			Usage:     "print the merged install configuration as canonical JSON, as bootc install print-configuration does",
			UsageText: "cfs-install print-configuration [--all] [--root DIR]",
			Description: `Prints the install configuration that bootc/install/*.toml under DIR's
/usr/lib, /usr/local/lib, /etc and /run make when merged as bootc merges them,
as one line of canonical JSON (keys sorted, no final newline): every key of
bootc's [install] table, null when unset, [install.filesystem.root] type and
root-fs-type made the same and block defaulting to ["direct"] when any
fragment has an [install] table, as bootc canonicalizes it. kargs and
karg-deletes are left out unless --all is given, as bootc leaves them out
(install to-filesystem applies them itself). Run in the image (DIR /, the
default) or on an unpacked image tree.

  cfs-install print-configuration | jq -r .stateroot`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "all", Usage: "also print kargs and karg-deletes"},
				&cli.PathFlag{Name: "root", Value: "/", Usage: "root `DIR` whose install configuration is merged"},
			},
			Action: printConfiguration,
		}},
	}
}

func toFilesystem(c *cli.Context) error {
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetOutput(c.App.ErrWriter)
	if c.NArg() != 2 {
		return cliutil.Usage("give ROOT and SOURCE (see --help)")
	}
	switch c.String("bootloader") {
	case "", "grub", "systemd":
	case "none":
		if c.Bool("composefs-native") {
			return cliutil.Usage("--bootloader none is not supported for a composefs-native host (bootc refuses it too)")
		}
	default:
		return cliutil.Usage("--bootloader %q: want grub, systemd or none", c.String("bootloader"))
	}
	switch c.String("uki-key") {
	case "", nativehost.KeyEfi, nativehost.KeyUKI:
	default:
		return cliutil.Usage("--uki-key %q: want efi or uki", c.String("uki-key"))
	}
	if c.Bool("enforce-container-sigpolicy") && c.Bool("insecure-policy") {
		return cliutil.Usage("--insecure-policy accepts any image, which --enforce-container-sigpolicy refuses: give one of them")
	}
	root, source := c.Args().Get(0), c.Args().Get(1)
	if strings.TrimSpace(root) == "" || strings.TrimSpace(source) == "" {
		return cliutil.Usage("ROOT and SOURCE must not be empty")
	}
	rep, err := cliutil.Progress(c, c.Bool("quiet"))
	if err != nil {
		return err
	}
	defer rep.Done()
	opts := install.Options{
		Root:                      root,
		Source:                    source,
		ComposefsNative:           c.Bool("composefs-native"),
		SourceImgref:              c.String("source-imgref"),
		HostConfigRoot:            c.String("host-config-root"),
		Kargs:                     c.StringSlice("karg"),
		Bootloader:                c.String("bootloader"),
		ESP:                       c.String("esp"),
		UKIKey:                    c.String("uki-key"),
		UKIAddons:                 c.StringSlice("uki-addon"),
		Stateroot:                 c.String("stateroot"),
		Sys:                       systemContext(c),
		InsecurePolicy:            c.Bool("insecure-policy"),
		EnforceContainerSigpolicy: c.Bool("enforce-container-sigpolicy"),
		Logf:                      func(format string, args ...any) { rep.Logf("cfs-install: "+format, args...) },
		Progress:                  rep,
	}
	if c.IsSet("root-mount-spec") {
		spec := c.String("root-mount-spec")
		opts.RootMountSpec = &spec
	}
	if c.IsSet("boot-mount-spec") {
		spec := c.String("boot-mount-spec")
		opts.BootMountSpec = &spec
	}
	res, err := install.Install(c.Context, opts)
	if err != nil {
		return hint(err)
	}
	rep.Done()
	if c.Bool("json") {
		return cliutil.PrintJSON(c, res)
	}
	if c.Bool("quiet") {
		return nil
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Installed %s onto %s as a%s host\n", res.ImageReference, res.Root, map[string]string{install.KindOstree: "n ostree", install.KindComposefs: " composefs-native"}[res.HostKind])
	fmt.Fprintf(w, "  Image:   %s (%s)\n", res.ManifestDigest, res.Source)
	if res.Commit != "" {
		fmt.Fprintf(w, "  Commit:  %s\n", res.Commit)
	}
	if res.BootVerity != "" {
		fmt.Fprintf(w, "  Boot:    composefs=%s\n", res.BootVerity)
	}
	fmt.Fprintf(w, "  Storage: %s\n", storageLine(res))
	fmt.Fprintf(w, "  Kernel arguments: %s\n", strings.Join(res.Kargs, " "))
	for _, e := range res.BootEntries {
		fmt.Fprintf(w, "  Entry:   %s\n", e)
	}
	if len(res.UKIAddons) > 0 {
		fmt.Fprintf(w, "  UKI addons: %s\n", strings.Join(res.UKIAddons, " "))
	}
	if res.SignaturePolicy != "" {
		fmt.Fprintf(w, "  Signature policy: enforced (%s)\n", res.SignaturePolicy)
	}
	return nil
}

func printConfiguration(c *cli.Context) error {
	if c.NArg() != 0 {
		return cliutil.Usage("print-configuration takes no arguments (see --help)")
	}
	cfg, err := installconfig.Load(c.Path("root"))
	if err != nil {
		return err
	}
	out, err := cfg.PrintJSON(c.Bool("all"))
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(out)
	return err
}

func storageLine(res *install.Result) string {
	if res.Storage == "disabled" {
		if res.HostKind == install.KindOstree {
			return "ostree-composefs-bound"
		}
		return "composefs"
	}
	s := "unified (" + res.Storage + ")"
	if res.StorageFrom != "" {
		s += " from " + res.StorageFrom
	}
	return s
}

// hint names the flag or step that helps with a failure.
func hint(err error) error {
	switch {
	case errors.Is(err, install.ErrNotEmpty):
		return cliutil.Hint(err, "cfs-install needs an empty root filesystem; remove what an earlier attempt left")
	case errors.Is(err, install.ErrReflinksRequired):
		return cliutil.Hint(err, "use a filesystem with reflinks (XFS, btrfs) or set unified = \"enabled-with-copy\"")
	case errors.Is(err, reflink.ErrRefused):
		return err
	}
	var stall *pull.StallError
	if errors.As(err, &stall) {
		return cliutil.Hint(err, "the registry stalled")
	}
	return err
}

func systemContext(c *cli.Context) *types.SystemContext {
	sys := &types.SystemContext{
		AuthFilePath:        c.String("authfile"),
		SignaturePolicyPath: c.String("signature-policy"),
		DockerCertPath:      c.String("cert-dir"),
	}
	if !c.Bool("tls-verify") {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys
}
