// Package fsck checks that the stores of a bootc host agree (Images:
// bootc's `fsck images` report) and that each store is intact (Objects).
package fsck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/clone"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/cstorage"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// ImageStatus is one image of bootc's fsck report. Field names and order
// are bootc's (serde camelCase, struct order), so scripts written for
// `bootc internals fsck images --json` read ours.
type ImageStatus struct {
	Name                    string   `json:"name"`
	InComposefs             bool     `json:"inComposefs"`
	InContainersStorage     bool     `json:"inContainersStorage"`
	Repaired                bool     `json:"repaired"` // a repair was attempted
	OstreeCommitPresent     bool     `json:"ostreeCommitPresent"`
	OstreeCommitSynthesized bool     `json:"ostreeCommitSynthesized"`
	IsLive                  bool     `json:"isLive"`
	Pending                 bool     `json:"pending"`
	Issues                  []string `json:"issues"`
}

// ImagesReport is bootc's FsckReport.
type ImagesReport struct {
	UnifiedStorageEnabled bool          `json:"unifiedStorageEnabled"`
	Binding               string        `json:"binding"`
	ReflinksSupported     *bool         `json:"reflinksSupported"`
	Images                []ImageStatus `json:"images"`
	OK                    bool          `json:"ok"`
}

// WriteJSON writes the report as bootc prints it: serde_json's pretty form
// (two-space indent, nothing escaped that JSON does not require) and a
// newline, so a script that compares bootc's bytes reads the same from us.
func (r *ImagesReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ImagesOptions say what to check and where to say it.
type ImagesOptions struct {
	Repair bool
	// Out receives bootc's human lines as they happen; nil for none.
	Out io.Writer
	// GraphRoot and RunRoot of bootc's containers-storage; "" for
	// <sysroot>/ostree/bootc/storage and cstorage.DefaultRunRoot.
	GraphRoot, RunRoot string
}

// Issue texts, bootc's where bootc has one.
const (
	issueCommitMissing    = "ostree commit missing"
	issueNotSynthesized   = "ostree commit is not composefs-synthesized (expected on a bound system)"
	issueNoManifestDigest = "synthesized commit has no manifest digest"
	issueNoTag            = "no composefs tag backs this commit (objects may have been GC'd)"
	issueNotOpenable      = "composefs OCI image failed to open (objects missing/corrupt)"
	// Ours: bootc's unified check starts from the tags, so a pinned
	// deployment whose tag is gone would go unseen.
	issueDeploymentNoTag = "no composefs tag backs this deployment (objects may have been GC'd)"
	issueNotInCStorage   = "in composefs but not in containers-storage"
)

type checker struct {
	h    *sysroot.Host
	opts ImagesOptions
	rep  *ImagesReport
}

func (c *checker) say(format string, args ...any) {
	if c.opts.Out != nil {
		fmt.Fprintf(c.opts.Out, format+"\n", args...)
	}
}

// Images is bootc's `internals fsck images [--repair]` for h, in each of
// the three binding states (reference: containers-storage.md §3.2).
func Images(h *sysroot.Host, opts ImagesOptions) (*ImagesReport, error) {
	c := &checker{h: h, opts: opts, rep: &ImagesReport{Binding: string(h.Storage.Binding), Images: []ImageStatus{}}}
	if c.opts.GraphRoot == "" {
		c.opts.GraphRoot = cstorage.DefaultGraphRoot(h.Root)
	}
	// bootc's probe: FICLONE on the physical root; null when the probe
	// itself fails (a read-only root, say).
	if ok, err := reflink.Supported(h.Root); err == nil {
		c.rep.ReflinksSupported = &ok
	}
	var err error
	switch h.Storage.Binding {
	case sysroot.BindingUnified:
		c.rep.UnifiedStorageEnabled = true
		err = c.unified()
	case sysroot.BindingBoundOnly:
		err = c.boundOnly()
	default:
		c.say("bootc fsck images: unified storage not enabled; nothing to check")
		c.rep.OK = true
	}
	if err != nil {
		return nil, err
	}
	return c.rep, nil
}

// pinned is every deployment the bootloader (or a staged deployment)
// holds: booted, staged, rollback and any other entry.
func pinned(h *sysroot.Host) []*sysroot.Deployment {
	var out []*sysroot.Deployment
	for _, d := range append([]*sysroot.Deployment{h.Booted, h.Staged, h.Rollback}, h.Other...) {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// pinnedManifests maps the manifest digest of every pinned deployment to
// the deployment: from the origin on composefs hosts, from the commit's
// ostree.manifest-digest on ostree hosts (a commit that is gone or has
// none contributes nothing).
func pinnedManifests(h *sysroot.Host) (map[string]*sysroot.Deployment, []string) {
	m := map[string]*sysroot.Deployment{}
	var order []string
	for _, d := range pinned(h) {
		md := d.ManifestDigest
		if h.Kind == sysroot.KindOstree {
			if info, err := h.ImageInfo(d); err == nil {
				md = info.ManifestDigest
			}
		}
		if md != "" && m[md] == nil {
			m[md] = d
			order = append(order, md)
		}
	}
	return m, order
}

func deploymentName(d *sysroot.Deployment, md string) string {
	if d.Image != nil && d.Image.Image != "" {
		return d.Image.Image
	}
	if d.Commit != "" {
		return d.Commit
	}
	return md
}

// displayName is bootc's: the config label org.opencontainers.image.ref.name,
// else the tag.
func displayName(img *oci.StoredImage, tag string) string {
	if img != nil {
		if cfg, err := bootcconv.ParseConfig(img.Config); err == nil {
			if n := cfg.Config.Labels["org.opencontainers.image.ref.name"]; n != "" {
				return n
			}
		}
	}
	return tag
}

func (c *checker) openRepo() (*composefs.Repository, error) {
	repo, err := composefs.Open(filepath.Join(c.h.Root, "composefs"))
	if errors.Is(err, composefs.ErrNotRepository) {
		return nil, nil
	}
	return repo, err
}

// bootcTags lists the localhost/bootc-* tags with the manifest each
// points at, sorted.
func bootcTags(repo *composefs.Repository) ([]string, map[string]string, error) {
	tags, err := repo.Tags()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: listing tags: %w", repo.Path(), err)
	}
	sort.Strings(tags)
	var out []string
	manifests := map[string]string{}
	for _, t := range tags {
		if !strings.HasPrefix(t, bootcconv.TagPrefix) {
			continue
		}
		md, err := repo.ResolveTag(t)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, t)
		manifests[t] = md
	}
	return out, manifests, nil
}

// cstorageIDs is the set of image IDs in bootc's store. A store that does
// not exist holds nothing, and a read-only check does not create it.
func (c *checker) cstorageIDs(store *cstorage.Store) (map[string]bool, error) {
	ids := map[string]bool{}
	if store == nil {
		return ids, nil
	}
	imgs, err := store.Storage().Images()
	if err != nil {
		return nil, fmt.Errorf("containers-storage %s: %w", store.GraphRoot(), err)
	}
	for _, im := range imgs {
		ids[im.ID] = true
	}
	return ids, nil
}

func (c *checker) openStore(create bool) (*cstorage.Store, error) {
	if !create {
		if _, err := os.Stat(c.opts.GraphRoot); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	return cstorage.Open(c.opts.GraphRoot, c.opts.RunRoot)
}

// ensureTags re-creates localhost/bootc-<manifest> for every pinned
// deployment whose manifest the repository still holds (bootc's
// ensure_tags_for_pinned_deployments; only --repair mutates).
func (c *checker) ensureTags(repo *composefs.Repository, manifests map[string]*sysroot.Deployment, order []string) {
	for _, md := range order {
		tag := bootcconv.TagPrefix + md
		if _, err := repo.ResolveTag(tag); err == nil {
			continue
		}
		name := deploymentName(manifests[md], md)
		c.say("  [REPAIR] Re-tagging %s in composefs repo...", name)
		if err := repo.SetTag(tag, md); err != nil {
			c.say("  [REPAIR FAILED] %s: %v", name, err)
			continue
		}
		c.say("  [REPAIRED] Re-tagged %s successfully", name)
	}
}

func (c *checker) unified() error {
	c.say("bootc fsck: checking image stores")
	if c.rep.ReflinksSupported != nil && !*c.rep.ReflinksSupported {
		c.say("bootc fsck: WARNING: filesystem does not support reflinks (FICLONE); composefs and ostree object stores are NOT sharing blocks")
	}
	repo, err := c.openRepo()
	if err != nil {
		return err
	}
	if repo == nil {
		return fmt.Errorf("%s: unified storage is enabled but there is no composefs repository", filepath.Join(c.h.Root, "composefs"))
	}
	defer repo.Close()
	manifests, order := pinnedManifests(c.h)
	if c.opts.Repair {
		c.ensureTags(repo, manifests, order)
	}
	tags, tagManifest, err := bootcTags(repo)
	if err != nil {
		return err
	}

	// Live: on composefs hosts the config digests the bootloader entries
	// lead to (origin → manifest → config); bootc has no such filter on
	// ostree hosts, where every bootc tag counts.
	var live map[string]bool
	if c.h.Kind == sysroot.KindComposefs {
		live = map[string]bool{}
		failed := 0
		for _, md := range order {
			img, err := oci.OpenImage(repo, md)
			if err != nil {
				failed++
				continue
			}
			live[img.ConfigDigest] = true
		}
		if failed > 0 && failed == len(order) {
			return fmt.Errorf("none of the %d pinned deployments' images opens in %s: refusing a check that would pass vacuously", len(order), repo.Path())
		}
	}

	store, err := c.openStore(c.opts.Repair)
	if err != nil {
		return err
	}
	if store != nil {
		defer store.Close()
	}
	inCStor, err := c.cstorageIDs(store)
	if err != nil {
		return err
	}

	type entry struct {
		tag, md, name string
		img           *oci.StoredImage
		openErr       error
	}
	var entries []entry
	tagged := map[string]bool{}
	for _, t := range tags {
		md := tagManifest[t]
		tagged[md] = true
		img, err := oci.OpenImage(repo, md)
		if live != nil && (err != nil || !live[img.ConfigDigest]) {
			if manifests[md] == nil {
				continue // not live: left to cfs-gc
			}
		}
		entries = append(entries, entry{tag: t, md: md, name: displayName(img, t), img: img, openErr: err})
	}
	var untaggedPinned []string
	for _, md := range order {
		if !tagged[md] {
			untaggedPinned = append(untaggedPinned, md)
		}
	}
	if len(entries) == 0 && len(untaggedPinned) == 0 {
		c.say("bootc fsck: no bootc-managed images in composefs; nothing to check")
		c.rep.OK = true
		return nil
	}

	policy := reflink.Always
	if c.h.Storage.Unified == sysroot.UnifiedEnabledWithCopy {
		policy = reflink.Auto
	}
	nOK, nFail := 0, 0
	for _, e := range entries {
		st := ImageStatus{Name: e.name, InComposefs: true, IsLive: true, Issues: []string{}}
		if e.openErr != nil {
			st.InComposefs = false
			st.Issues = append(st.Issues, issueNotOpenable)
			c.say("  [FAIL] %s: %s", e.name, issueNotOpenable)
			nFail++
			c.rep.Images = append(c.rep.Images, st)
			continue
		}
		hex := strings.TrimPrefix(e.img.ConfigDigest, "sha256:")
		st.InContainersStorage = inCStor[hex]
		switch {
		case st.InContainersStorage:
			c.say("  [OK]  %s (composefs: yes, containers-storage: yes)", e.name)
			nOK++
		case c.opts.Repair:
			st.Repaired = true
			c.say("  [REPAIR] Restoring %s to containers-storage...", e.name)
			if _, err := clone.RestoreImage(store, repo, e.md, nil, policy); err != nil {
				c.say("  [REPAIR FAILED] %s: %v", e.name, err)
				st.Issues = append(st.Issues, issueNotInCStorage)
				nFail++
			} else {
				st.InContainersStorage = true
				inCStor[hex] = true
				c.say("  [REPAIRED] Successfully restored %s to containers-storage", e.name)
				nOK++
			}
		default:
			st.Issues = append(st.Issues, issueNotInCStorage)
			c.say("  [FAIL] %s - in composefs but not in containers-storage", e.name)
			c.say("         Hint: re-run with `--repair` to restore, or `bootc upgrade` to re-pull")
			nFail++
		}
		c.rep.Images = append(c.rep.Images, st)
	}
	for _, md := range untaggedPinned {
		name := deploymentName(manifests[md], md)
		st := ImageStatus{Name: name, IsLive: true, Issues: []string{issueDeploymentNoTag}}
		c.say("  [FAIL] %s: %s", name, issueDeploymentNoTag)
		if c.opts.Repair {
			st.Repaired = true
			c.say("  [REPAIR UNAVAILABLE] %s: objects missing from composefs; run 'bootc upgrade' (or cfs-upgrade) to re-pull", name)
		}
		nFail++
		c.rep.Images = append(c.rep.Images, st)
	}
	c.summary(nOK, 0, nFail)
	return nil
}

func (c *checker) summary(nOK, nPending, nFail int) {
	c.rep.OK = nFail == 0
	switch {
	case nFail > 0:
		c.say("bootc fsck: %d failure(s) found (%d OK, %d FAIL)", nFail, nOK, nFail)
	case nPending > 0:
		c.say("bootc fsck: checks passed (%d OK, %d pending reboot to activate)", nOK, nPending)
	default:
		c.say("bootc fsck: all checks passed (%d image(s) OK)", nOK)
	}
}

// probe is bootc's BoundImageProbe.
type probe struct {
	name, md, tag                                     string
	isLive, commitPresent, synthesized, hasMD, tagged bool
	openable                                          bool
}

func (p *probe) issues() []string {
	if !p.commitPresent {
		return []string{issueCommitMissing}
	}
	var out []string
	if !p.synthesized {
		out = append(out, issueNotSynthesized)
	}
	if !p.hasMD {
		out = append(out, issueNoManifestDigest)
	}
	if p.hasMD && !p.tagged {
		out = append(out, issueNoTag)
	}
	if p.hasMD && !p.openable {
		out = append(out, issueNotOpenable)
	}
	return out
}

func (c *checker) boundOnly() error {
	c.say("bootc fsck: checking bound-only image stores")
	repo, err := c.openRepo()
	if err != nil {
		return err
	}
	if repo == nil {
		c.say("bootc fsck: no composefs repo found; nothing to check")
		c.rep.OK = true
		return nil
	}
	defer repo.Close()
	orepo, err := ostree.Open(filepath.Join(c.h.Root, sysroot.OstreeRepoPath))
	if err != nil {
		return err
	}
	defer orepo.Close()

	var probes []*probe
	seen := map[string]bool{}
	backed := map[string]bool{}
	for _, d := range pinned(c.h) {
		if d.Commit == "" || seen[d.Commit] {
			continue
		}
		seen[d.Commit] = true
		p := &probe{name: deploymentName(d, ""), isLive: d == c.h.Booted || d == c.h.Staged}
		if ok, err := orepo.HasObject(d.Commit, ostree.ObjectCommit); err == nil && ok {
			p.commitPresent = true
			if info, err := c.h.ImageInfo(d); err == nil {
				p.synthesized = info.Synthesized
				p.md = info.ManifestDigest
			}
		}
		p.hasMD = p.md != ""
		if p.hasMD {
			p.tag = bootcconv.TagPrefix + p.md
			if _, err := repo.ResolveTag(p.tag); err == nil {
				p.tagged = true
				backed[p.tag] = true
			}
			img, err := oci.OpenImage(repo, p.md)
			p.openable = err == nil
			p.name = displayName(img, p.name)
		}
		probes = append(probes, p)
	}
	tags, tagManifest, err := bootcTags(repo)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if backed[t] {
			continue
		}
		img, err := oci.OpenImage(repo, tagManifest[t])
		probes = append(probes, &probe{name: displayName(img, t), md: tagManifest[t], tag: t,
			commitPresent: true, synthesized: true, hasMD: true, tagged: true, openable: err == nil})
	}
	if len(probes) == 0 {
		c.say("bootc fsck: no bootc-managed images in composefs; nothing to check")
		c.rep.OK = true
		return nil
	}

	nOK, nPending, nFail := 0, 0, 0
	for _, p := range probes {
		issues := p.issues()
		pending := p.isLive && p.commitPresent && !p.synthesized
		if pending {
			issues = nil
		}
		st := ImageStatus{Name: p.name, InComposefs: p.tagged, OstreeCommitPresent: p.commitPresent,
			OstreeCommitSynthesized: p.synthesized, IsLive: p.isLive, Pending: pending, Issues: []string{}}
		switch {
		case !p.isLive:
			c.say("  [NOTE] %s (stale composefs tag, not a live deployment)", p.name)
		case pending:
			c.say("  [PENDING] %s (bound; booted deployment not yet composefs-backed — reboot to activate)", p.name)
			nPending++
		case len(issues) == 0:
			c.say("  [OK]  %s (composefs: yes, bound-only)", p.name)
			nOK++
		case c.opts.Repair:
			st.Repaired = true
			if len(issues) == 1 && issues[0] == issueNoTag && p.openable {
				c.say("  [REPAIR] Re-tagging %s in composefs repo...", p.name)
				if err := repo.SetTag(p.tag, p.md); err != nil {
					c.say("  [REPAIR FAILED] %s: %v", p.name, err)
					st.Issues = issues
					nFail++
				} else {
					c.say("  [REPAIRED] Re-tagged %s successfully", p.name)
					st.InComposefs = true
					nOK++
				}
			} else {
				if !p.openable {
					c.say("  [REPAIR UNAVAILABLE] %s: objects missing from composefs; run 'bootc image set-unified composefs' or 'bootc upgrade'", p.name)
				} else {
					c.say("  [REPAIR UNAVAILABLE] %s: run 'bootc image set-unified composefs' or 'bootc upgrade' to fix: %s", p.name, strings.Join(issues, "; "))
				}
				st.Issues = issues
				nFail++
			}
		default:
			st.Issues = issues
			c.say("  [FAIL] %s: %s", p.name, strings.Join(issues, "; "))
			nFail++
		}
		c.rep.Images = append(c.rep.Images, st)
	}
	c.summary(nOK, nPending, nFail)
	return nil
}
