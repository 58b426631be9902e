// Package install puts an image onto an empty, mounted physical root as a
// bootable host, the way `bootc install to-filesystem` does: an ostree
// host (ostree admin init-fs/os-init, the commit synthesized from the
// composefs repository by reflink, ostree admin deploy with bootc's origin
// and kernel arguments) or a composefs-native host (the composefs
// repository, its boot image, and a native deployment). It does not
// partition or install a bootloader binary; an existing GRUB or
// systemd-boot reads the entries it writes.
//
// Everything a bootloader could boot is written last: the entry (ostree
// admin deploy, or the native deployment's entry) and, on unified hosts,
// composefs/bootc.json after it. A failure or a kill before that leaves
// ROOT without an entry, so never an entry naming something missing.
package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/installconfig"
	"github.com/cfs-project/cfs/lib/nativehost"
	"github.com/cfs-project/cfs/lib/progress"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/sigpolicy"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// Host kinds an install makes.
const (
	KindOstree    = "ostree"
	KindComposefs = "composefs"
)

// Options say what to install where.
type Options struct {
	// Root is the mounted physical root; it must be empty (checkEmpty).
	Root string
	// Source is the image to install, any containers/image reference.
	Source string
	// ComposefsNative asks for a composefs-native host even when the
	// image carries no sealed UKI.
	ComposefsNative bool
	// SourceImgref is the image reference the host follows for upgrades
	// (its origin), when not Source itself. As with bootc, giving it also
	// merges the installing host's install configuration (HostConfigRoot)
	// over the image's.
	SourceImgref string
	// HostConfigRoot is the installing host's root, read for its install
	// configuration when SourceImgref is given; "" means "/".
	HostConfigRoot string
	// Kargs are kernel arguments added after the image's (--karg).
	Kargs []string
	// RootMountSpec is the root= value; nil derives root=UUID=<uuid> from
	// the filesystem mounted at Root, and "" leaves root= out.
	RootMountSpec *string
	// BootMountSpec is the /boot filesystem's source (boot=, and how the
	// host mounts it); nil derives UUID=<uuid> when ROOT/boot is a
	// filesystem of its own, and "" leaves it out.
	BootMountSpec *string
	// Bootloader is "grub" or "systemd" (native hosts: where the entry
	// goes); "" takes [install] bootloader, else picks systemd when ESP
	// holds systemd-boot, else grub. "none" (bootc: no bootloader managed
	// by bootc) is refused for a native host, as bootc refuses it with
	// the composefs backend; ostree hosts get ostree's BLS entries either
	// way, cfs installing no bootloader.
	Bootloader string
	// ESP is the mounted EFI system partition (native hosts with
	// systemd-boot or a UKI); "" means Root/boot/efi when that exists.
	ESP string
	// UKIKey is the key of a systemd-boot entry booting a UKI, "efi" or
	// "uki"; "" decides as bootc does (nativehost).
	UKIKey string
	// UKIAddons names the image's UKI addons to put beside the UKI on a
	// composefs-native host (bootc's --uki-addon: file name without
	// .addon.efi); none by default, as with bootc.
	UKIAddons []string
	// Stateroot is the ostree stateroot; "" takes [install] stateroot,
	// else "default". RootMountSpec and BootMountSpec, when nil, likewise
	// take [install] root-mount-spec and boot-mount-spec: bootc's
	// command line wins over its install configuration.
	Stateroot string
	// Sys and InsecurePolicy are handed to the pull.
	Sys            *types.SystemContext
	InsecurePolicy bool
	// EnforceContainerSigpolicy is bootc's --enforce-container-sigpolicy:
	// the signature policy's default must not accept any image (refused
	// before ROOT is written), and an ostree host's origin is
	// ostree-image-signed: so that upgrades enforce it too. [install]
	// enforce-container-sigpolicy = true of the install configuration
	// turns it on as well.
	EnforceContainerSigpolicy bool
	// Jobs is the number of layers fetched at once (0: the pull's default).
	Jobs int
	// Logf reports steps for humans; nil discards them.
	Logf func(format string, args ...any)
	// Progress, if set, reports the pull (human lines and bootc's
	// --progress-fd events).
	Progress *progress.Reporter

	// blsAppendExceptDefault is [install.ostree] bls-append-except-default.
	blsAppendExceptDefault *string
}

// Result describes the installed host (cfs-install --json).
type Result struct {
	Root           string   `json:"root"`
	HostKind       string   `json:"hostKind"`
	Source         string   `json:"source"`
	ImageReference string   `json:"imageReference"`
	ManifestDigest string   `json:"manifestDigest"`
	ImageVerity    string   `json:"imageVerity"`
	Storage        string   `json:"storage"` // disabled | enabled | enabled-with-copy
	StorageFrom    string   `json:"storageFrom,omitempty"`
	Kargs          []string `json:"kargs"`
	// BootMountSpec is the source of a separate /boot ("" when /boot is
	// on the root filesystem).
	BootMountSpec string `json:"bootMountSpec,omitempty"`
	// ostree hosts
	Stateroot  string `json:"stateroot,omitempty"`
	Commit     string `json:"commit,omitempty"`
	Deployment string `json:"deployment,omitempty"`
	// composefs-native hosts
	BootVerity string `json:"bootVerity,omitempty"`
	SealedUKI  bool   `json:"sealedUKI,omitempty"`
	// UKIAddons are the UKI addons written beside the UKI (file names).
	UKIAddons []string `json:"ukiAddons,omitempty"`
	// SignaturePolicy is the policy file the image was checked with when
	// enforce-container-sigpolicy was on.
	SignaturePolicy string `json:"signaturePolicy,omitempty"`
	// BootEntries are the bootloader entries written.
	BootEntries []string      `json:"bootEntries"`
	Elapsed     time.Duration `json:"elapsedNs"`
	// Phases is where the time went, in order.
	Phases []Phase `json:"phases"`

	phaseStart time.Time
}

// Phase is one step of an install and its wall time.
type Phase struct {
	Name    string        `json:"name"`
	Elapsed time.Duration `json:"elapsedNs"`
}

// phase ends the running phase (if any) and starts the one called name
// ("" starts none).
func (r *Result) phase(name string) {
	now := time.Now()
	if n := len(r.Phases); n > 0 && r.Phases[n-1].Elapsed == 0 {
		r.Phases[n-1].Elapsed = now.Sub(r.phaseStart)
	}
	if name != "" {
		r.Phases = append(r.Phases, Phase{Name: name})
		r.phaseStart = now
	}
}

// composefsDir is the composefs repository below a physical root.
const composefsDir = "composefs"

// ErrReflinksRequired is wrapped when the install configuration asks for
// unified storage "enabled" on a filesystem that cannot share extents. It
// is a reflink.ErrRefused, the exit status of every such refusal.
var ErrReflinksRequired = &reflinksRequired{}

type reflinksRequired struct{}

func (*reflinksRequired) Error() string {
	return "unified storage \"enabled\" needs a filesystem with reflinks"
}
func (*reflinksRequired) Is(target error) bool { return target == reflink.ErrRefused }

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// TargetImgref is the reference the host follows: SourceImgref, else Source.
func (o *Options) TargetImgref() string {
	if o.SourceImgref != "" {
		return o.SourceImgref
	}
	return o.Source
}

// originReference is the container-image-reference of an ostree host:
// signed when enforce-container-sigpolicy is on, as bootc writes it.
func (o *Options) originReference() string {
	if o.EnforceContainerSigpolicy {
		return SignedOriginReference(o.TargetImgref())
	}
	return OriginReference(o.TargetImgref())
}

// OriginReference is the container-image-reference bootc writes for an
// image reference: ostree-unverified-registry:<name> for docker://, else
// ostree-unverified-image:<transport>:<name>; an ostree-* reference is
// kept as given.
func OriginReference(ref string) string {
	switch {
	case strings.HasPrefix(ref, "ostree-"):
		return ref
	case strings.HasPrefix(ref, "docker://"):
		return "ostree-unverified-registry:" + strings.TrimPrefix(ref, "docker://")
	case strings.HasPrefix(ref, "registry:"):
		return "ostree-unverified-registry:" + strings.TrimPrefix(ref, "registry:")
	}
	return "ostree-unverified-image:" + ref
}

// Install installs opts.Source onto opts.Root.
func Install(ctx context.Context, opts Options) (_ *Result, retErr error) {
	start := time.Now()
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	opts.Root = root
	if err := checkEmpty(root); err != nil {
		return nil, err
	}
	if err := validateKargs(opts.Kargs); err != nil {
		return nil, err
	}
	// The origin must be one bootc reads back.
	if _, err := bootcconv.ParseImageReference(OriginReference(opts.TargetImgref())); err != nil {
		return nil, fmt.Errorf("image reference %q: give it with its transport (docker://, oci:, containers-storage:, …): %w", opts.TargetImgref(), err)
	}
	hostRoot := ""
	if opts.SourceImgref != "" {
		hostRoot = opts.HostConfigRoot
		if hostRoot == "" {
			hostRoot = "/"
		}
	}
	reflinks, err := reflink.Supported(root)
	if err != nil {
		return nil, err
	}

	// The policy is read once: the image is checked with it (pull.Open,
	// always, as bootc's image proxy does) and, with enforcement, it
	// must not accept anything by default.
	sp, err := sigpolicy.Load(opts.Sys, opts.InsecurePolicy)
	if err != nil {
		return nil, err
	}
	if opts.EnforceContainerSigpolicy {
		if err := sp.AssertNotInsecure("--enforce-container-sigpolicy"); err != nil {
			return nil, err
		}
	}
	policy, err := sp.Context()
	if err != nil {
		return nil, err
	}
	defer policy.Destroy()
	src, err := pull.Open(ctx, opts.Source, opts.Sys, policy)
	if err != nil {
		return nil, err
	}
	defer src.Close()

	// Without reflinks, "enabled" must be refused before ROOT sees a
	// byte: read the install configuration from the layers first.
	if !reflinks {
		if err := refuseWithoutReflinks(ctx, src, root, hostRoot); err != nil {
			return nil, err
		}
	}

	pullStart := time.Now()
	opts.logf("pulling %s into %s", opts.Source, filepath.Join(root, composefsDir))
	repo, err := createComposefsRepo(root)
	if err != nil {
		return nil, err
	}
	defer repo.Close()
	// Until the host is being written, ROOT holds only the pulled
	// repository: a failure (a pull error, an install configuration that
	// is wrong or refuses the install) removes it, leaving ROOT as it was.
	writing := false
	defer func() {
		if retErr != nil && !writing {
			repo.Close()
			if err := os.RemoveAll(filepath.Join(root, composefsDir)); err != nil {
				retErr = fmt.Errorf("%w (and removing the pulled %s: %v)", retErr, composefsDir, err)
			}
		}
	}()
	var onPull func(pull.Event)
	if opts.Progress != nil {
		onPull = pull.Report(opts.Progress, src)
	}
	pres, err := pull.ToComposefs(ctx, repo, src, pull.Options{Jobs: opts.Jobs, Progress: onPull})
	if err != nil {
		return nil, err
	}
	img := &imageTree{repo: repo, root: pres.Tree}
	cfg, err := img.installConfig(hostRoot)
	if err != nil {
		return nil, err
	}
	mode := cfg.Effective()
	if mode == sysroot.UnifiedEnabled && !reflinks {
		// The layers' symlinked fragments could only be judged now.
		return nil, fmt.Errorf("%s (%s says %q): %w", root, cfg.UnifiedFrom, mode, ErrReflinksRequired)
	}
	applyConfig(&opts, cfg)
	if !opts.EnforceContainerSigpolicy && cfg.EnforceContainerSigpolicy != nil && *cfg.EnforceContainerSigpolicy {
		// Known only now, from the image: the check the flag makes
		// before the pull, the repository then removed.
		if err := sp.AssertNotInsecure("enforce-container-sigpolicy = true of " + cfg.EnforceFrom); err != nil {
			return nil, err
		}
		opts.EnforceContainerSigpolicy = true
	}
	imageKargs, err := img.kargs()
	if err != nil {
		return nil, err
	}
	res := &Result{
		Root: root, Source: opts.Source, ImageReference: opts.TargetImgref(), ManifestDigest: src.ManifestDigest,
		ImageVerity: fmt.Sprintf("%x", pres.ImageID), Storage: string(mode), StorageFrom: cfg.UnifiedFrom,
		Stateroot: opts.Stateroot, Phases: []Phase{{Name: "pull", Elapsed: time.Since(pullStart)}},
	}
	if opts.EnforceContainerSigpolicy {
		res.SignaturePolicy = sp.File
	}
	// bootc's rule: an image with a sealed UKI boots only as a
	// composefs-native host, flag or not.
	kind := KindOstree
	if opts.ComposefsNative || sealed(pres) {
		kind = KindComposefs
	}
	res.HostKind = kind
	if kind == KindComposefs {
		switch opts.Bootloader {
		case "none":
			// bootc: "Bootloader set to none is not supported with the
			// composefs backend".
			return nil, fmt.Errorf("%s installs as a composefs-native host: bootloader %q is not supported there (bootc refuses it too); use grub or systemd", opts.Source, opts.Bootloader)
		case "grub-cc":
			return nil, fmt.Errorf("%s installs as a composefs-native host: bootloader %q is not supported by cfs-install; use grub or systemd", opts.Source, opts.Bootloader)
		}
	}
	if res.BootMountSpec, err = bootMountSpec(opts); err != nil {
		return nil, err
	}
	rootArgs, err := rootKargs(opts, res.BootMountSpec)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindOstree:
		if len(opts.UKIAddons) > 0 {
			// bootc: --uki-addon requires the composefs backend.
			return nil, fmt.Errorf("%s installs as an ostree host: UKI addons (--uki-addon) are for composefs-native hosts", opts.Source)
		}
		// bootc's order (install.rs): root filesystem, install
		// configuration, the image's kargs.d, then the install
		// configuration's karg-deletes applied, then the command line.
		kargs := append(append(append([]string{}, rootArgs...), splitAll(cfg.Kargs)...), imageKargs...)
		kargs = deleteKargs(kargs, cfg.KargDeletes)
		res.Kargs = append(kargs, splitAll(opts.Kargs)...)
		writing = true
		err = installOstree(ctx, &opts, repo, src, pres, mode, res)
	default:
		if len(cfg.Kargs) > 0 {
			opts.logf("warning: [install] kargs of the install configuration (%s) are not used on a composefs-native host, as bootc's composefs backend does not use them", strings.Join(cfg.Kargs, " "))
		}
		res.Kargs = nativeKargs(rootArgs, splitAll(opts.Kargs), imageKargs)
		writing = true
		err = installNative(ctx, &opts, repo, pres, mode, res)
	}
	if err != nil {
		return nil, err
	}
	res.phase("")
	res.Elapsed = time.Since(start)
	return res, nil
}

// applyConfig fills the options not given from the install configuration,
// as bootc's install does (the command line wins), and bootc's defaults.
func applyConfig(opts *Options, cfg *installconfig.Config) {
	if opts.Stateroot == "" && cfg.Stateroot != nil {
		opts.Stateroot = *cfg.Stateroot
	}
	if opts.Stateroot == "" {
		opts.Stateroot = "default"
	}
	if opts.RootMountSpec == nil {
		opts.RootMountSpec = cfg.RootMountSpec
	}
	if opts.BootMountSpec == nil {
		opts.BootMountSpec = cfg.BootMountSpec
	}
	if opts.Bootloader == "" && cfg.Bootloader != nil {
		opts.Bootloader = *cfg.Bootloader
	}
	opts.blsAppendExceptDefault = cfg.BLSAppendExceptDefault
}

// refuseWithoutReflinks reads the install configuration from the layers
// and refuses "enabled" before anything is written.
func refuseWithoutReflinks(ctx context.Context, src *pull.Source, root, hostRoot string) error {
	scratch, err := os.MkdirTemp("", "cfs-install-scan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	found, err := scanInstallConfig(ctx, src, scratch)
	if err != nil || !found {
		return err // not found: a symlinked fragment, judged after the pull
	}
	roots := []string{scratch}
	if hostRoot != "" {
		roots = append(roots, hostRoot)
	}
	cfg, err := installconfig.LoadOf(roots...)
	if err != nil {
		return imagePaths(err, scratch)
	}
	if cfg.Effective() == sysroot.UnifiedEnabled {
		from := cfg.UnifiedFrom
		if rel, err := filepath.Rel(scratch, from); err == nil && !startsDotDot(rel) {
			from = "image:/" + filepath.ToSlash(rel)
		}
		return fmt.Errorf("%s (%s says %q): %w", root, from, cfg.Unified, ErrReflinksRequired)
	}
	return nil
}

// createComposefsRepo makes ROOT/composefs as bootc does: mode 0700,
// SHA-512.
func createComposefsRepo(root string) (*composefs.Repository, error) {
	p := filepath.Join(root, composefsDir)
	repo, err := composefs.Create(p, fsverity.SHA512)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(p, 0o700); err != nil {
		repo.Close()
		return nil, err
	}
	return repo, nil
}

// bootMountSpec is bootc's boot mount spec: the option, else
// UUID=<uuid> of the filesystem at ROOT/boot when that is a filesystem of
// its own (bootc compares the devices), else none.
func bootMountSpec(opts Options) (string, error) {
	if opts.BootMountSpec != nil {
		return *opts.BootMountSpec, nil
	}
	boot := filepath.Join(opts.Root, "boot")
	if !nativehost.SeparateFS(opts.Root, boot) {
		return "", nil
	}
	uuid, err := fsUUID(boot)
	if err != nil {
		return "", fmt.Errorf("the separate /boot: %w", err)
	}
	return "UUID=" + uuid, nil
}

// rootKargs are the root filesystem's arguments as bootc gives them:
// root=<spec>, rw, and boot=<boot spec> when /boot is separate.
func rootKargs(opts Options, bootSpec string) ([]string, error) {
	var spec string
	if opts.RootMountSpec != nil {
		spec = *opts.RootMountSpec
	} else {
		var err error
		if spec, err = RootMountSpec(opts.Root); err != nil {
			return nil, err
		}
	}
	out := []string{}
	if spec != "" {
		out = append(out, "root="+spec)
	}
	out = append(out, "rw")
	if bootSpec != "" {
		out = append(out, "boot="+bootSpec)
	}
	return out, nil
}

// deleteKargs is bootc's delete_kargs: a delete with a value removes that
// exact argument, a bare key every argument with that key.
func deleteKargs(args, deletes []string) []string {
	if len(deletes) == 0 {
		return args
	}
	exact, keys := map[string]bool{}, map[string]bool{}
	for _, d := range deletes {
		if strings.Contains(d, "=") {
			exact[d] = true
		} else {
			keys[d] = true
		}
	}
	var out []string
	for _, a := range args {
		k, _, _ := strings.Cut(a, "=")
		if exact[a] || keys[k] {
			continue
		}
		out = append(out, a)
	}
	return out
}

func splitAll(args []string) []string {
	var out []string
	for _, a := range args {
		out = append(out, SplitCmdline(a)...)
	}
	return out
}

// validateKargs refuses arguments that would corrupt an entry's options
// line or are the host's own business.
func validateKargs(kargs []string) error {
	for _, k := range kargs {
		if strings.ContainsAny(k, "\n\r\x00") {
			return fmt.Errorf("kernel argument %q: holds a newline or NUL", k)
		}
		for _, a := range SplitCmdline(k) {
			key, _, _ := strings.Cut(a, "=")
			if key == "ostree" || key == "composefs" {
				return fmt.Errorf("kernel argument %q: %s= is written by the install itself", a, key)
			}
		}
	}
	return nil
}
