// Command cfs-pull fetches a container image into a composefs repository
// and writes its object list to stdout.
package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/oci"
	"github.com/cfs-project/cfs/lib/progress"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/stream"
)

const description = `Fetches SOURCE, any containers/image reference (docker://, oci:, oci-archive:,
docker-archive:, dir:, containers-storage:), into the composefs repository
(<sysroot>/composefs, or --repo) the way bootc does: each layer is stored as a
splitstream whose file bodies are objects named by their fs-verity digest,
the merged tree becomes a composefs EROFS image (format V1), and the image is
tagged localhost/bootc-<manifest digest> unless --tag says otherwise. Layers
already in the repository are not fetched again.

Signatures are checked against /etc/containers/policy.json, and
registries.conf and auth files are read as podman reads them.

stdout carries the object list (docs/stream.md) for cfs-clone or
cfs-ostree-import; progress and messages go to stderr. When the image ships
an SELinux policy (/etc/selinux/config), every entry of the list carries the
security.selinux label that policy gives its path, as bootc computes it
before it synthesizes an ostree commit; the composefs image itself stays
unlabelled, as an OCI image is.

From containers-storage:[overlay@GRAPHROOT+RUNROOT]NAME|ID (default graph root
<sysroot>/ostree/bootc/storage) nothing is decompressed or copied: each
layer's stream is built from its tar-split and every file is cloned
(FICLONE) from the layer's diff directory, then checked against the CRC64
tar-split recorded, its fs-verity digest and the layer's diff ID.

  cfs-pull docker://quay.io/org/os:42 | cfs-clone --to ostree | cfs-ostree-import
  cfs-pull containers-storage:quay.io/org/os:42 | cfs-clone --to ostree | cfs-ostree-import
  cfs-pull --from-repo localhost/bootc-sha256:... > image.list`

func main() {
	if reexec.Init() {
		return
	}
	cliutil.Main(&cli.App{
		Name:        "cfs-pull",
		Usage:       "fetch an image into the composefs repository and write its object list",
		UsageText:   "cfs-pull [options] SOURCE\n   cfs-pull [options] --from-repo TAG|MANIFEST-DIGEST",
		Description: description,
		Flags: []cli.Flag{
			cliutil.SysrootFlag,
			&cli.StringFlag{Name: "repo", Usage: "composefs repository (default <sysroot>/composefs; created if missing)"},
			&cli.StringFlag{Name: "tag", Usage: "tag the image with `NAME` instead of localhost/bootc-<manifest digest>"},
			&cli.StringFlag{Name: "from-repo", Usage: "emit the object list of `TAG|DIGEST`, already in the repository, without any network"},
			&cli.StringFlag{Name: "digest-algo", Value: "sha512", Usage: "fs-verity algorithm of a repository this command creates (sha256|sha512)"},
			&cli.BoolFlag{Name: "insecure-policy", Usage: "accept any image regardless of the signature policy (explicit only)"},
			&cli.StringFlag{Name: "signature-policy", Usage: "signature policy `FILE` instead of /etc/containers/policy.json"},
			&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "require HTTPS and verify certificates for registries"},
			&cli.StringFlag{Name: "authfile", Usage: "registry credentials `FILE` (default: podman's search order)"},
			&cli.StringFlag{Name: "cert-dir", Usage: "`DIR` with certificates for the registry"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "write the object list to `FILE` (- for stdout, none to skip)"},
			&cli.BoolFlag{Name: "no-selinux", Usage: "do not label the object list from the SELinux policy the image ships"},
			&cli.IntFlag{Name: "jobs", Value: 2, Usage: "layers fetched at once"},
			&cli.StringFlag{Name: "reflink", Usage: "containers-storage: sources: `always` (every file shares its extents with the store's; fail otherwise) or auto (copy where that is impossible); default always where the repository and the store can share extents"},
			&cli.IntFlag{Name: "progress-fd", Usage: "write bootc-style JSON progress lines to file descriptor `N` (>= 3)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress or summary on stderr"},
			&cli.BoolFlag{Name: "debug", Usage: "show containers/image's own log messages"},
		},
		Action: run,
	})
}

func run(c *cli.Context) error {
	// containers/image logs retries and decisions through logrus at info
	// level; they would interleave with our progress lines.
	logrus.SetLevel(logrus.WarnLevel)
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fromRepo := c.String("from-repo")
	if fromRepo == "" && c.NArg() != 1 || fromRepo != "" && c.NArg() != 0 {
		return cliutil.Usage("cfs-pull: give exactly one SOURCE, or --from-repo without one (see --help)")
	}
	rep, err := cliutil.Progress(c, c.Bool("quiet"))
	if err != nil {
		return err
	}
	defer rep.Done()

	repoPath := cliutil.ComposefsRepo(c)
	var repo *composefs.Repository
	if fromRepo != "" {
		repo, err = composefs.Open(repoPath)
	} else {
		alg, aerr := fsverity.ParseAlgorithm(c.String("digest-algo"))
		if aerr != nil {
			return cliutil.Usage("cfs-pull: --digest-algo: %v", aerr)
		}
		repo, err = openOrCreate(repoPath, alg)
	}
	if err != nil {
		return err
	}
	defer repo.Close()

	var rec *stream.Image
	var tree *fstree.Dir
	if fromRepo != "" {
		rec, tree, err = fromRepository(repo, fromRepo)
	} else if name := c.Args().First(); strings.HasPrefix(name, cstoragePrefix) {
		rec, tree, err = fetchCStorage(ctx, c, repo, rep, name)
	} else {
		rec, tree, err = fetch(ctx, c, repo, rep)
	}
	if err != nil {
		return err
	}
	if !c.Bool("no-selinux") {
		policy, split, err := pull.LabelSELinux(repo, tree)
		if err != nil {
			return err
		}
		if policy != nil {
			rep.Logf("cfs-pull: labelled from the image's SELinux policy %q (%d specifications)", policy.Type, policy.Len())
			if split > 0 {
				rep.Logf("cfs-pull: %d hardlinked names got labels of their own and are listed as separate files", split)
			}
		}
	}
	return writeList(c.String("output"), rec, tree, repo)
}

func openOrCreate(path string, alg fsverity.Algorithm) (*composefs.Repository, error) {
	repo, err := composefs.Open(path)
	if err == nil {
		return repo, nil
	}
	if _, statErr := os.Stat(path + "/meta.json"); statErr == nil {
		return nil, err
	}
	return composefs.Create(path, alg)
}

func systemContext(c *cli.Context) *types.SystemContext {
	sys := &types.SystemContext{
		AuthFilePath:        c.String("authfile"),
		SignaturePolicyPath: c.String("signature-policy"),
		DockerCertPath:      c.String("cert-dir"),
		BlobInfoCacheDir:    "", // pull uses no blob info cache
	}
	if !c.Bool("tls-verify") {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys
}

func fetch(ctx context.Context, c *cli.Context, repo *composefs.Repository, rep *progress.Reporter) (*stream.Image, *fstree.Dir, error) {
	sys := systemContext(c)
	policy, err := pull.PolicyContext(sys, c.Bool("insecure-policy"))
	if err != nil {
		return nil, nil, err
	}
	defer policy.Destroy()
	name := c.Args().First()
	src, err := pull.Open(ctx, name, sys, policy)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()

	res, err := pull.ToComposefs(ctx, repo, src, pull.Options{Tag: c.String("tag"), Jobs: c.Int("jobs"), Progress: reporter(rep, src)})
	if err != nil {
		return nil, nil, err
	}
	var fetched, newObjects, presentObjects int
	var newBytes int64
	for _, l := range res.Layers {
		if l.Members > 0 {
			fetched++
		}
		newObjects += l.ObjectsNew
		presentObjects += l.ObjectsPresent
		newBytes += l.BytesNew
	}
	rep.Logf("cfs-pull: %s: manifest %s, composefs image %x, tag %s", name, src.ManifestDigest, res.ImageID, res.Tag)
	rep.Logf("cfs-pull: layers fetched %d, already present %d; objects new %d (%s), already present %d",
		fetched, res.Present, newObjects, humanBytes(newBytes), presentObjects)
	if res.Implied > 0 {
		rep.Logf("cfs-pull: note: layers used %d parent directories without listing them; created as 0755 root:root", res.Implied)
	}
	rec := imageRecord(name, src.ManifestDigest, src.Manifest, src.ConfigDigest, src.Config, res.DiffIDs, repo, res.Tag, res.ImageID)
	for i := range rec.Layers {
		rec.Layers[i].Digest = src.Layers[i].Digest.String()
		rec.Layers[i].MediaType = src.Layers[i].MediaType
		rec.Layers[i].Size = src.Layers[i].Size
	}
	return rec, res.Tree, nil
}

func reporter(rep *progress.Reporter, src *pull.Source) func(pull.Event) {
	var total int64
	for _, l := range src.Layers {
		total += l.Size
	}
	done := make(map[int]int64)
	finished := 0
	return func(ev pull.Event) {
		short := strings.TrimPrefix(ev.Digest, "sha256:")
		if len(short) > 20 {
			short = short[:20]
		}
		required := false
		line := ""
		switch ev.Kind {
		case "layer-bytes":
			done[ev.Layer] = ev.Done
		case "layer-done":
			done[ev.Layer] = ev.Bytes
			finished++
			required = true
			line = fmt.Sprintf("layer %d/%d %s: %s, %d objects new, %d present", ev.Layer+1, ev.Layers, short, humanBytes(ev.Bytes), ev.Stats.ObjectsNew, ev.Stats.ObjectsPresent)
		case "layer-present":
			finished++
			required = true
			line = fmt.Sprintf("layer %d/%d %s: already in the repository", ev.Layer+1, ev.Layers, short)
		default:
			return
		}
		var sum int64
		for _, n := range done {
			sum += n
		}
		if line == "" {
			line = fmt.Sprintf("pulling %s %s of %s, %d/%d layers", bar(sum, total, 30), humanBytes(sum), humanBytes(total), finished, len(src.Layers))
		}
		rep.Progress(progress.Bytes{
			Task: "pulling", Description: "Pulling composefs image", ID: "composefs-pull",
			Bytes: sum, BytesTotal: total, Steps: int64(finished), StepsTotal: int64(len(src.Layers)),
			Subtasks: []progress.SubTask{{Subtask: "composefs_layer", Description: "Layer: " + short, ID: short, Bytes: done[ev.Layer], BytesTotal: ev.Bytes}},
		}, required, line)
	}
}

func fromRepository(repo *composefs.Repository, ref string) (*stream.Image, *fstree.Dir, error) {
	manifestDigest := ref
	if !strings.HasPrefix(ref, "sha256:") {
		d, err := repo.ResolveTag(ref)
		if err != nil {
			return nil, nil, err
		}
		manifestDigest = d
	}
	img, err := oci.OpenImage(repo, manifestDigest)
	if err != nil {
		return nil, nil, err
	}
	tree, _, err := oci.BuildTree(repo, img.DiffIDs)
	if err != nil {
		return nil, nil, err
	}
	tag := ""
	if !strings.HasPrefix(ref, "sha256:") {
		tag = ref
	}
	rec := imageRecord("", manifestDigest, img.Manifest, img.ConfigDigest, img.Config, img.DiffIDs, repo, tag, img.ImageID)
	if err := fillLayerDigests(rec, img.Manifest); err != nil {
		return nil, nil, err
	}
	return rec, tree, nil
}

func imageRecord(source, manifestDigest string, manifest []byte, configDigest string, config []byte, diffIDs []string, repo *composefs.Repository, tag string, imageID []byte) *stream.Image {
	rec := &stream.Image{
		Source:         source,
		ManifestDigest: manifestDigest,
		ConfigDigest:   configDigest,
		Manifest:       string(manifest),
		Config:         string(config),
		Stores:         stream.Stores{Composefs: &stream.ComposefsStore{Repo: repo.Path(), Tag: tag}},
	}
	if imageID != nil {
		rec.Stores.Composefs.Image = hex.EncodeToString(imageID)
	}
	for _, d := range diffIDs {
		rec.Layers = append(rec.Layers, stream.Layer{DiffID: d})
	}
	return rec
}

func writeList(output string, rec *stream.Image, tree *fstree.Dir, repo *composefs.Repository) error {
	if output == "none" {
		return nil
	}
	out := os.Stdout
	if output != "-" {
		f, err := os.Create(output)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	w := stream.NewWriter(out)
	if err := w.WriteImage(rec); err != nil {
		return err
	}
	src := func(l *fstree.Leaf) string { return repo.ObjectPath(l.Object) }
	if err := fstree.WriteEntries(w, tree, src); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if output != "-" {
		return out.Sync()
	}
	return nil
}

// bar draws done/total as a fixed-width bar for the terminal line.
func bar(done, total int64, width int) string {
	filled := width
	if total > 0 && done < total {
		filled = int(done * int64(width) / total)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(" ", width-filled) + "]"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// fillLayerDigests copies each layer's blob digest, media type and size
// from the stored manifest into the image record.
func fillLayerDigests(rec *stream.Image, manifestBytes []byte) error {
	m, err := manifest.FromBlob(manifestBytes, manifest.GuessMIMEType(manifestBytes))
	if err != nil {
		return fmt.Errorf("stored manifest %s: %w", rec.ManifestDigest, err)
	}
	layers := m.LayerInfos()
	if len(layers) != len(rec.Layers) {
		return fmt.Errorf("stored manifest %s lists %d layers, its config %d", rec.ManifestDigest, len(layers), len(rec.Layers))
	}
	for i, l := range layers {
		rec.Layers[i].Digest = l.Digest.String()
		rec.Layers[i].MediaType = l.MediaType
		rec.Layers[i].Size = l.Size
	}
	return nil
}
