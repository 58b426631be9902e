package install

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/stream"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// repoConfig is the ostree repository configuration bootc's install
// writes: no bootloader configuration of ostree's own (entries only),
// /boot-prefixed entry paths (works with and without a separate /boot),
// and a read-only sysroot.
var repoConfig = [][3]string{
	{"sysroot", "bootloader", "none"},
	{"sysroot", "bootprefix", "true"},
	{"sysroot", "readonly", "true"},
}

// runTool runs one of the ostree CLI's steps. The child dies with us
// (Pdeathsig): a killed install must not leave an ostree admin deploy
// running on.
func runTool(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return nil
}

// installOstree makes ROOT an ostree host bound to composefs: the commit
// is synthesized from the composefs repository the image was pulled into
// (cfs-pull | cfs-clone --to ostree | cfs-ostree-import, in process), and
// deployed with bootc's origin and kernel arguments.
func installOstree(ctx context.Context, opts *Options, repo *composefs.Repository, src *pull.Source, pres *pull.Result, mode sysroot.Unified, res *Result) error {
	root := opts.Root
	res.phase("ostree-init")
	opts.logf("initializing the ostree sysroot (stateroot %s)", opts.Stateroot)
	if err := runTool(ctx, "ostree", "admin", "init-fs", "--modern", root); err != nil {
		return err
	}
	orepoPath := filepath.Join(root, sysroot.OstreeRepoPath)
	orepo, err := ostree.Open(orepoPath)
	if err != nil {
		return err
	}
	conf := repoConfig
	if v := opts.blsAppendExceptDefault; v != nil {
		// bootc sets [install.ostree] after its defaults.
		conf = append(conf[:len(conf):len(conf)], [3]string{"sysroot", "bls-append-except-default", *v})
	}
	for _, kv := range conf {
		if err := orepo.SetConfig(kv[0], kv[1], kv[2]); err != nil {
			orepo.Close()
			return err
		}
	}
	orepo.Close()
	// Bound from the first boot: upgrades go through composefs
	// (bootc-set-unified composefs sets the same key).
	if err := sysroot.SetRepoFlag(root); err != nil {
		return err
	}
	if err := runTool(ctx, "ostree", "admin", "os-init", "--sysroot="+root, opts.Stateroot); err != nil {
		return err
	}

	originRef := opts.originReference()
	res.phase("synthesize")
	opts.logf("synthesizing the ostree commit from composefs")
	rec := pull.SourceRecord(src, pres, repo)
	if _, _, err := pull.LabelSELinux(repo, pres.Tree); err != nil {
		return err
	}
	commit, err := synthesize(ctx, repo, rec, pres, orepoPath, originRef)
	if err != nil {
		return err
	}
	res.Commit = commit

	if mode.Enabled() {
		res.phase("containers-storage")
		if err := toContainersStorage(root, repo, rec, mode); err != nil {
			return err
		}
	}

	// The entry: everything it names is in place.
	work, err := os.MkdirTemp("", "cfs-install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	origin := filepath.Join(work, "origin")
	if err := os.WriteFile(origin, []byte("[origin]\ncontainer-image-reference="+originRef+"\n"), 0o644); err != nil {
		return err
	}
	args := []string{"admin", "deploy", "--sysroot=" + root, "--os=" + opts.Stateroot, "--origin-file=" + origin}
	// --karg-append keeps every argument (--karg would let a later
	// console= replace an earlier one), as bootc hands ostree the list.
	for _, k := range res.Kargs {
		args = append(args, "--karg-append="+k)
	}
	res.phase("deploy")
	opts.logf("deploying %s", commit)
	if err := runTool(ctx, "ostree", append(args, commit)...); err != nil {
		return err
	}
	deps, _ := filepath.Glob(filepath.Join(root, "ostree/deploy", opts.Stateroot, "deploy", commit+".[0-9]*"))
	for _, d := range deps {
		if !strings.HasSuffix(d, ".origin") {
			res.Deployment = d
		}
	}
	// A separate /boot is mounted read-only through the deployment's
	// /etc/fstab, the one line bootc writes there.
	if res.BootMountSpec != "" {
		if res.Deployment == "" {
			return fmt.Errorf("ostree admin deploy left no deployment of %s", commit)
		}
		fstab := res.BootMountSpec + " /boot auto ro 0 0\n"
		if err := atomicfile.WriteFile("", filepath.Join(res.Deployment, "etc", "fstab"), []byte(fstab), 0o644); err != nil {
			return err
		}
	}
	entries, _ := filepath.Glob(filepath.Join(root, "boot/loader/entries/ostree-*.conf"))
	sort.Strings(entries)
	res.BootEntries = entries

	// bootc's install provenance, on ostree hosts only.
	aleph, err := newAleph(opts.Source, opts.TargetImgref(), src.ManifestDigest, src.Config, pres.Tree, hostSELinuxEnabled())
	if err != nil {
		return err
	}
	if err := writeAleph(root, aleph); err != nil {
		return err
	}

	if mode.Enabled() {
		// Last: the flag promises every store holds the image.
		if err := sysroot.WriteBootcJSON(root, mode); err != nil {
			return err
		}
	}
	return nil
}

// synthesize commits the image's object list to the ostree repository
// through clone.Commit (cfs-pull | cfs-clone --to ostree |
// cfs-ostree-import in process, the list never encoded) and returns the
// commit. No ref is written unless every stage succeeded.
func synthesize(ctx context.Context, repo *composefs.Repository, rec *stream.Image, pres *pull.Result, orepoPath, originRef string) (string, error) {
	cloneRepo, err := ostree.Open(orepoPath)
	if err != nil {
		return "", err
	}
	defer cloneRepo.Close()
	importRepo, err := ostree.Open(orepoPath)
	if err != nil {
		return "", err
	}
	defer importRepo.Close()
	policy, err := clone.DefaultPolicy(cloneRepo)
	if err != nil {
		return "", err
	}
	produce := func(w stream.EntryWriter) error { return pull.WriteListTo(w, rec, pres.Tree, repo) }
	_, res, err := clone.Commit(ctx, cloneRepo, importRepo, produce, clone.Options{Policy: policy}, ostreeimport.Options{ImageReference: originRef})
	if err != nil {
		return "", err
	}
	return res.Commit, nil
}

// toContainersStorage puts the image into bootc's containers-storage
// (ROOT/ostree/bootc/storage), cloned from the composefs objects, under
// the name podman would give the source.
func toContainersStorage(root string, repo *composefs.Repository, rec *stream.Image, mode sysroot.Unified) error {
	store, err := cstorage.Open(cstorage.DefaultGraphRoot(root), "")
	if err != nil {
		return err
	}
	defer store.Close()
	policy := reflink.Always
	if mode == sysroot.UnifiedEnabledWithCopy {
		policy = reflink.Auto
	}
	_, err = clone.RestoreImage(store, repo, rec.ManifestDigest, clone.DefaultNames(rec), policy)
	return err
}
