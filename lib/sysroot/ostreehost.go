package sysroot

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
)

// loadOstree reads an ostree host: bootloader entries boot/loader/entries/
// ostree-*.conf (bootc only considers those names), each pointing through
// its ostree= bootlink at ostree/deploy/<stateroot>/deploy/<commit>.<serial>.
func loadOstree(h *Host, cmd Cmdline, opts Options) error {
	entries, err := readBLSDir(filepath.Join(h.Root, "boot", "loader", "entries"), "ostree-", false)
	if err != nil {
		return err
	}
	var ordered []*Deployment
	seen := map[string]*Deployment{}
	for _, e := range entries {
		d, err := ostreeDeploymentForEntry(h.Root, e)
		if err != nil {
			return err
		}
		if seen[d.Dir] != nil {
			return fmt.Errorf("%s: deployment %s already has an entry", e.Path, d.Dir)
		}
		seen[d.Dir] = d
		ordered = append(ordered, d)
	}
	if cmd.Ostree != "" {
		h.Booted = ostreeBooted(h.Root, cmd.Ostree, entries, seen)
	}
	if opts.RunDir != "" && exists(filepath.Join(opts.RunDir, "ostree", "staged-deployment")) {
		if h.Staged, err = ostreeStaged(h.Root, seen); err != nil {
			return err
		}
	}
	h.assignSlots(ordered)
	return nil
}

// ostreeBooted finds the deployment the kernel's ostree= names. While the
// boot version it names still exists (always so under bootc, which only
// stages), the bootlink is followed exactly. After an in-place bootloader
// swap it is gone and bootc's suffix match is the fallback; ostree itself
// compares device and inode of / instead, which only works on the running
// host.
func ostreeBooted(root, arg string, entries []*BLSEntry, byDir map[string]*Deployment) *Deployment {
	if d, err := ostreeDeploymentForEntry(root, &BLSEntry{Path: "kernel command line", Options: "ostree=" + arg}); err == nil {
		return byDir[d.Dir]
	}
	for _, e := range entries {
		if v, _ := e.Option("ostree"); sameBootlink(arg, v) {
			d, _ := ostreeDeploymentForEntry(root, e)
			if d != nil {
				return byDir[d.Dir]
			}
		}
	}
	return nil
}

// sameBootlink compares two ostree= values the way bootc does, by the
// /<stateroot>/<bootcsum>/<bootserial> suffix: the boot.<N> part flips on
// every deployment, so the booted kernel's argument may name the other one.
func sameBootlink(a, b string) bool {
	sa, errA := bootlinkSuffix(a)
	sb, errB := bootlinkSuffix(b)
	return errA == nil && errB == nil && sa == sb
}

// bootlinkSuffix splits /ostree/boot.<N>/<stateroot>/<bootcsum>/<bootserial>.
func bootlinkSuffix(v string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(v, "/"), "/")
	if len(parts) != 5 || parts[0] != "ostree" || !strings.HasPrefix(parts[1], "boot.") {
		return "", fmt.Errorf("ostree=%q is not /ostree/boot.N/<stateroot>/<bootcsum>/<bootserial>", v)
	}
	for _, p := range parts[2:] {
		if p == "" || p == "." || p == ".." {
			return "", fmt.Errorf("ostree=%q is not /ostree/boot.N/<stateroot>/<bootcsum>/<bootserial>", v)
		}
	}
	return strings.Join(parts[2:], "/"), nil
}

// ostreeDeploymentForEntry follows an entry's bootlink. Only the link's
// last component is used, joined under root, so a hostile image cannot
// point us outside the physical root.
func ostreeDeploymentForEntry(root string, e *BLSEntry) (*Deployment, error) {
	v, ok := e.Option("ostree")
	if !ok {
		return nil, fmt.Errorf("%s: no ostree= in options", e.Path)
	}
	suffix, err := bootlinkSuffix(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	parts := strings.Split(strings.TrimPrefix(v, "/"), "/")
	bootDir := filepath.Join(root, "ostree", parts[1])
	if t, err := os.Readlink(bootDir); err == nil {
		if strings.Contains(t, "/") {
			return nil, fmt.Errorf("%s: %s points outside ostree/ (%q)", e.Path, bootDir, t)
		}
		bootDir = filepath.Join(root, "ostree", t)
	}
	link := filepath.Join(bootDir, filepath.FromSlash(suffix))
	target, err := os.Readlink(link)
	if err != nil {
		return nil, fmt.Errorf("%s: ostree=%s: bootlink: %w", e.Path, v, err)
	}
	stateroot := parts[2]
	d, err := readOstreeDeployment(root, stateroot, filepath.Base(target))
	if err != nil {
		return nil, fmt.Errorf("%s: ostree=%s: %w", e.Path, v, err)
	}
	d.Entry = e
	return d, nil
}

// readOstreeDeployment reads ostree/deploy/<stateroot>/deploy/<name> and
// its sibling <name>.origin.
func readOstreeDeployment(root, stateroot, name string) (*Deployment, error) {
	commit, serialStr, ok := strings.Cut(name, ".")
	serial, err := strconv.Atoi(serialStr)
	if !ok || err != nil || serial < 0 || !isHex(commit, 64) {
		return nil, fmt.Errorf("deployment name %q is not <commit>.<serial>", name)
	}
	dir := filepath.Join(root, "ostree", "deploy", stateroot, "deploy", name)
	if !isDir(dir) {
		return nil, fmt.Errorf("deployment %s is missing", dir)
	}
	origin, err := ReadOrigin(dir + ".origin")
	if err != nil {
		return nil, err
	}
	d := &Deployment{Dir: dir, Origin: origin, Stateroot: stateroot, Commit: commit, DeploySerial: serial}
	if origin.ImageReference != "" {
		ref, _ := bootcconv.ParseImageReference(origin.ImageReference) // checked by ReadOrigin
		d.Image = &ref
	}
	return d, nil
}

// ostreeStaged finds the staged deployment: ostree checks it out before
// the bootloader knows of it (entries are written at shutdown, by
// ostree-finalize-staged), so it is the deployment no entry points at.
// Several such (leftovers of an interrupted cleanup) → the newest.
func ostreeStaged(root string, referenced map[string]*Deployment) (*Deployment, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "ostree", "deploy", "*", "deploy", "*"))
	if err != nil {
		return nil, err
	}
	var best *Deployment
	var bestTime int64
	for _, dir := range dirs {
		if strings.HasSuffix(dir, ".origin") || referenced[dir] != nil || !isDir(dir) {
			continue
		}
		stateroot := filepath.Base(filepath.Dir(filepath.Dir(dir)))
		d, err := readOstreeDeployment(root, stateroot, filepath.Base(dir))
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(d.Origin.Path)
		if err != nil {
			return nil, err
		}
		if best == nil || fi.ModTime().UnixNano() > bestTime {
			best, bestTime = d, fi.ModTime().UnixNano()
		}
	}
	if best != nil {
		best.Staged = true
	}
	return best, nil
}
