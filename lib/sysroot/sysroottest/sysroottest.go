// Package sysroottest builds fake bootc physical roots for tests, in the
// layouts bootc.md §1 describes: an ostree host (bare repo with container
// commits, deployments, origins, bootlinks, BLS entries) or a
// composefs-native host (composefs repo with the images' manifests and
// configs, state/deploy, BLS entries or a GRUB user.cfg for UKIs).
package sysroottest

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/ostree"
)

// Image is one deployed image.
type Image struct {
	Ref          string // origin container-image-reference
	Architecture string
	Version      string // org.opencontainers.image.version label; "" for none
	Created      time.Time

	// A real image instead of the made-up one: its documents exactly as
	// stored (in the composefs repository the fixture is built on), the
	// verity of its EROFS image, and whether the ostree commit says it
	// was synthesized from composefs.
	RawManifest, RawConfig []byte
	ImageVerity            string
	Synthesized            bool
}

// Config is the image config JSON for im; its digest stands for the image.
func (im Image) Config() []byte {
	if im.RawConfig != nil {
		return im.RawConfig
	}
	cfg := map[string]any{
		"architecture": im.Architecture,
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{}},
		"config":       map[string]any{},
	}
	if !im.Created.IsZero() {
		cfg["created"] = im.Created.UTC().Format(time.RFC3339)
	}
	if im.Version != "" {
		cfg["config"] = map[string]any{"Labels": map[string]string{bootcconv.LabelVersion: im.Version}}
	}
	b, _ := json.Marshal(cfg)
	return b
}

// Manifest is an OCI manifest naming im's config.
func (im Image) Manifest() []byte {
	if im.RawManifest != nil {
		return im.RawManifest
	}
	cfg := im.Config()
	var annotations map[string]string
	if im.Version != "" {
		// bootc reads a composefs deployment's version here, an
		// ostree one's from the config label.
		annotations = map[string]string{bootcconv.AnnotationVersion: im.Version}
	}
	b, _ := json.Marshal(map[string]any{
		"annotations":   annotations,
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": oci.Digest(cfg), "size": len(cfg)},
		"layers":        []any{},
	})
	return b
}

// ManifestDigest is the digest of Manifest().
func (im Image) ManifestDigest() string { return oci.Digest(im.Manifest()) }

// Host is a built fixture.
type Host struct {
	Root    string
	RunDir  string   // a fake /run
	Cmdline string   // a kernel command line booting Images[Booted]
	Ids     []string // per image: ostree commit or composefs verity
}

// Deployment places one image in the bootloader.
type Deployment struct {
	Image Image
	// Staged deployments have no live bootloader entry yet.
	Staged bool
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, path, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

func hexOf(h []byte) string { return hex.EncodeToString(h) }

// Ostree builds an ostree host in root. deps are in bootloader order
// (first = default); booted indexes the one the kernel command line names.
// Staged deployments get a checkout and origin but no entry, and a
// run/ostree/staged-deployment marker.
func Ostree(t testing.TB, root string, deps []Deployment, booted int) *Host {
	t.Helper()
	repoPath := filepath.Join(root, "ostree", "repo")
	must(t, os.MkdirAll(filepath.Dir(repoPath), 0o755))
	if ostreeBin, err := exec.LookPath("ostree"); err == nil {
		out, err := exec.Command(ostreeBin, "init", "--repo="+repoPath, "--mode=bare").CombinedOutput()
		if err != nil {
			t.Fatalf("ostree init: %v: %s", err, out)
		}
	} else {
		r, err := ostree.Create(repoPath, ostree.ModeBare)
		must(t, err)
		r.Close()
	}
	repo, err := ostree.Open(repoPath)
	must(t, err)
	defer repo.Close()
	meta, err := repo.WriteDirMeta(ostree.DirMeta{Mode: 0o755})
	must(t, err)
	tree, err := repo.WriteDirTree(ostree.DirTree{})
	must(t, err)

	h := &Host{Root: root, RunDir: filepath.Join(root, "run")}
	const stateroot = "default"
	must(t, os.MkdirAll(h.RunDir, 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "boot", "loader.1", "entries"), 0o755))
	must(t, os.Symlink("loader.1", filepath.Join(root, "boot", "loader")))
	must(t, os.Symlink("boot.1.1", filepath.Join(root, "ostree", "boot.1")))
	n := 0
	for _, d := range deps {
		if !d.Staged {
			n++
		}
	}
	index := 0
	for i, d := range deps {
		im := d.Image
		md := []ostree.MetaEntry{
			ostree.MetaString("ostree.manifest-digest", im.ManifestDigest()),
			ostree.MetaString("ostree.manifest", string(im.Manifest())),
			ostree.MetaString("ostree.container.image-config", string(im.Config())),
			ostree.MetaBool("ostree.bootable", true),
		}
		if im.Synthesized {
			md = append(md, ostree.MetaBool("ostree-ext.composefs-synthesized", true))
		}
		commit, err := repo.WriteCommit(ostree.Commit{
			Metadata:  md,
			Subject:   fmt.Sprintf("image %d", i),
			Timestamp: uint64(1700000000 + i),
			RootTree:  tree,
			RootMeta:  meta,
		})
		must(t, err)
		h.Ids = append(h.Ids, commit)
		name := fmt.Sprintf("%s.%d", commit, 0)
		deployDir := filepath.Join(root, "ostree", "deploy", stateroot, "deploy", name)
		must(t, os.MkdirAll(filepath.Join(deployDir, "usr"), 0o755))
		write(t, deployDir+".origin", "[origin]\ncontainer-image-reference="+im.Ref+"\n")
		if d.Staged {
			write(t, filepath.Join(h.RunDir, "ostree", "staged-deployment"), "staged")
			continue
		}
		bootcsum := hexOf(sha256Sum(fmt.Sprintf("kernel-%d", i)))
		link := filepath.Join(root, "ostree", "boot.1.1", stateroot, bootcsum, "0")
		must(t, os.MkdirAll(filepath.Dir(link), 0o755))
		must(t, os.Symlink(filepath.Join("..", "..", "..", "deploy", stateroot, "deploy", name), link))
		ostreeArg := fmt.Sprintf("/ostree/boot.1/%s/%s/0", stateroot, bootcsum)
		entry := fmt.Sprintf("title Fedora Linux 42 (ostree:%d)\nversion %d\noptions root=UUID=1234 rw ostree=%s\nlinux /ostree/%s-%s/vmlinuz-6.1\ninitrd /ostree/%s-%s/initramfs-6.1.img\n",
			index, n-index, ostreeArg, stateroot, bootcsum, stateroot, bootcsum)
		write(t, filepath.Join(root, "boot", "loader.1", "entries", fmt.Sprintf("ostree-%d.conf", n-index)), entry)
		if i == booted {
			// The running kernel may name the other boot version.
			h.Cmdline = "BOOT_IMAGE=(hd0,gpt3)/ostree/x/vmlinuz root=UUID=1234 rw ostree=/ostree/boot.0/" + stateroot + "/" + bootcsum + "/0 quiet"
		}
		index++
	}
	return h
}

func sha256Sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// Verity is a made-up composefs image id for image i.
func Verity(i int) string {
	h := sha512.Sum512([]byte(fmt.Sprintf("erofs-%d", i)))
	return hexOf(h[:])
}

// ComposefsBoot says how a composefs host boots.
type ComposefsBoot int

const (
	BLS ComposefsBoot = iota // GRUB with type #1 entries in boot/loader/entries
	UKI                      // GRUB classic chainloading UKIs from boot/grub2/user.cfg
)

// Composefs builds a composefs-native host in root. Staged deployments
// appear in the staged entries (with the booted one as secondary, as
// bootc writes them) and, when runFile, in run/composefs/staged-deployment.
func Composefs(t testing.TB, root string, deps []Deployment, booted int, boot ComposefsBoot, runFile bool) *Host {
	t.Helper()
	h := &Host{Root: root, RunDir: filepath.Join(root, "run")}
	must(t, os.MkdirAll(h.RunDir, 0o755))
	repo, err := composefs.Create(filepath.Join(root, "composefs"), fsverity.SHA512)
	must(t, err)
	defer repo.Close()
	must(t, os.MkdirAll(filepath.Join(root, "ostree"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "composefs", "bootc", "storage"), 0o700))
	must(t, os.Symlink("../composefs/bootc", filepath.Join(root, "ostree", "bootc")))

	var live, staged []string // entry texts
	var bootedEntry string
	for i, d := range deps {
		im := d.Image
		v := Verity(i)
		if im.ImageVerity != "" {
			v = im.ImageVerity
		}
		h.Ids = append(h.Ids, v)
		if _, ok, _ := repo.StreamID(composefs.ManifestContentID(im.ManifestDigest())); !ok {
			must(t, oci.StoreImage(repo, im.Manifest(), im.Config(), nil, nil))
		}
		must(t, repo.SetTag(bootcconv.DefaultTag(im.ManifestDigest()), im.ManifestDigest()))
		dir := filepath.Join(root, "state", "deploy", v)
		must(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
		bootType := "bls"
		if boot == UKI {
			bootType = "uki"
		}
		write(t, filepath.Join(dir, v+".origin"), fmt.Sprintf(
			"[origin]\ncontainer-image-reference=%s\n\n[boot]\nboot_type=%s\ndigest=%s\n\n[image]\nmanifest_digest=%s\n",
			im.Ref, bootType, hexOf(sha256Sum("kernel+initrd")), im.ManifestDigest()))
		var entry string
		if boot == BLS {
			entry = fmt.Sprintf("title Fedora Linux 42\nversion 42.%d\nsort-key bootc-fedora-%%d\nlinux /boot/bootc_composefs-%s/vmlinuz\ninitrd /boot/bootc_composefs-%s/initrd\noptions root=UUID=1234 rw composefs=%s\n", i, v, v, v)
		} else {
			entry = fmt.Sprintf("menuentry \"Fedora Linux 42: (%s)\" {\n    search --no-floppy --set=root --fs-uuid \"${EFI_PART_UUID}\"\n    chainloader /EFI/Linux/bootc/bootc_composefs-%s.efi\n}\n", v, v)
		}
		if i == booted {
			h.Cmdline = "root=UUID=1234 rw composefs=" + v
			bootedEntry = entry
		}
		if d.Staged {
			staged = append(staged, entry)
			if runFile {
				write(t, filepath.Join(h.RunDir, "composefs", "staged-deployment"), fmt.Sprintf(`{"depl_id":"%s","finalization_locked":false}`, v))
			}
		} else {
			live = append(live, entry)
		}
	}
	if len(staged) > 0 {
		staged = append(staged, bootedEntry)
	}
	writeEntries := func(entries []string, suffix string) {
		if boot == UKI {
			text := "set timeout=5\n"
			for _, e := range entries {
				text += e
			}
			write(t, filepath.Join(root, "boot", "grub2", "user.cfg"+suffix), text)
			return
		}
		for j, e := range entries {
			// First = primary: file suffix 1 and the lower sort key.
			primary := 0
			if j == 0 {
				primary = 1
			}
			write(t, filepath.Join(root, "boot", "loader", "entries"+suffix, fmt.Sprintf("bootc_fedora-42.%d-%d.conf", j, primary)),
				fmt.Sprintf(e, j))
		}
	}
	writeEntries(live, "")
	if len(staged) > 0 {
		writeEntries(staged, ".staged")
	}
	return h
}
