// Command cfs-pull fetches a container image into a composefs repository
// and writes its object list to stdout.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-project/cfs/internal/cliutil"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/progress"
	"github.com/cfs-project/cfs/lib/pull"
	"github.com/cfs-project/cfs/lib/sigpolicy"
	"github.com/cfs-project/cfs/lib/stream"
)

const description = `Fetches SOURCE, any containers/image reference (docker://, oci:, oci-archive:,
docker-archive:, dir:, containers-storage:), into the composefs repository
(<sysroot>/composefs, or --repo) the way bootc does: each layer is stored as a
splitstream whose file bodies are objects named by their fs-verity digest,
the merged tree becomes a composefs EROFS image (format V1), and the image is
tagged localhost/bootc-<manifest digest> unless --tag says otherwise. Layers
already in the repository are not fetched again.

Signatures are checked against the containers signature policy
(/etc/containers/policy.json, found as podman finds it; --signature-policy
names another), and registries.conf and auth files are read as podman reads
them. --enforce-container-sigpolicy is what bootc does for an image reference
that requires signatures (ostree-image-signed:, which cfs-upgrade keeps in a
host's origin): a policy whose default is insecureAcceptAnything is refused,
with the policy file named, before anything is fetched or written.
--print-signature-policy prints the policy file a pull would be checked
against (and, with --enforce-container-sigpolicy, refuses an insecure one)
without pulling: cfs-upgrade hands that file to skopeo.

stdout carries the object list (docs/stream.md) for cfs-clone or
cfs-ostree-import; progress and messages go to stderr, and so does the
summary (--json: one JSON object). When the image ships
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
  cfs-pull --from-repo localhost/bootc-sha256:... > image.list
  cfs-pull --enforce-container-sigpolicy docker://quay.io/org/os:42 > image.list`

func main() {
	if reexec.Init() {
		return
	}
	limitMemory()
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return cliutil.ListOnStdout(&cli.App{
		Name:        "cfs-pull",
		Usage:       "fetch an image into the composefs repository and write its object list",
		UsageText:   "cfs-pull [options] SOURCE\n   cfs-pull [options] --from-repo TAG|MANIFEST-DIGEST\n   cfs-pull [--signature-policy FILE] [--enforce-container-sigpolicy] --print-signature-policy",
		Description: description,
		Flags: []cli.Flag{
			cliutil.SysrootFlag,
			&cli.PathFlag{Name: "repo", Usage: "composefs repository (default <sysroot>/composefs; created if missing)"},
			&cli.StringFlag{Name: "tag", Usage: "tag the image with `NAME` instead of localhost/bootc-<manifest digest>"},
			&cli.StringFlag{Name: "from-repo", Usage: "emit the object list of `TAG|DIGEST`, already in the repository, without any network"},
			&cli.StringFlag{Name: "digest-algo", Value: "sha512", Usage: "fs-verity algorithm of a repository this command creates (sha256|sha512)"},
			&cli.BoolFlag{Name: "insecure-policy", Usage: "accept any image regardless of the signature policy (explicit only)"},
			&cli.PathFlag{Name: "signature-policy", Usage: "signature policy `FILE` instead of /etc/containers/policy.json"},
			&cli.BoolFlag{Name: "enforce-container-sigpolicy", Usage: "refuse a signature policy whose default accepts any image (insecureAcceptAnything), before anything is fetched, as bootc does for an ostree-image-signed: reference (not for containers-storage: sources: skopeo or podman checked them when fetching them into the store)"},
			&cli.BoolFlag{Name: "print-signature-policy", Usage: "print the signature policy file a pull is checked against, and exit without pulling"},
			&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "require HTTPS and verify certificates for registries"},
			&cli.PathFlag{Name: "authfile", Usage: "registry credentials `FILE` (default: podman's search order)"},
			&cli.PathFlag{Name: "cert-dir", Usage: "`DIR` with certificates for the registry"},
			// Not a PathFlag: "-" and "none" are keywords, and the file is
			// opened once, at the start, in the caller's directory.
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "write the object list to `FILE` (- for stdout, none to skip)"},
			&cli.BoolFlag{Name: "no-selinux", Usage: "do not label the object list from the SELinux policy the image ships"},
			&cli.IntFlag{Name: "jobs", Value: 2, Usage: "layers fetched at once"},
			&cli.Int64Flag{Name: "low-speed-limit", Value: pull.DefaultLowSpeed.Limit, Usage: "a download slower than `BYTES` per second for --low-speed-time has stalled and fails the pull (0: only when nothing arrives)"},
			&cli.DurationFlag{Name: "low-speed-time", Value: pull.DefaultLowSpeed.Time, Usage: "how long a download may stay under --low-speed-limit (`DURATION`, e.g. 30s; 0 waits forever)"},
			&cli.StringFlag{Name: "decompressor", Value: pull.DecompressDefault, Usage: "inflate gzip layers with `CHOICE`: default (auto for a blob that is a file, as in an oci: layout, which the program then reads itself; builtin for any other), builtin (in process), auto (igzip, else pigz, when on PATH, else builtin: less CPU, but a registry's blob crosses a pipe twice), or the PATH of a program run as PROG -dc; a blob such a program refuses, or that is not exactly one gzip member, is inflated again in process, which decides"},
			&cli.StringFlag{Name: "reflink", Usage: "containers-storage: sources: `always` (every file shares its extents with the store's; fail otherwise) or auto (copy where that is impossible); default always where the repository and the store can share extents"},
			cliutil.JSONFlag,
			cliutil.ProgressFDFlag,
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress or summary on stderr"},
			&cli.BoolFlag{Name: "debug", Usage: "show containers/image's own log messages"},
		},
		Action: run,
	})
}

func run(c *cli.Context) error {
	defer startProfile(c.App.ErrWriter)()
	// containers/image logs retries and decisions through logrus at info
	// level; they would interleave with our progress lines.
	logrus.SetLevel(logrus.WarnLevel)
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	logrus.SetOutput(c.App.ErrWriter)
	fromRepo := c.String("from-repo")
	if c.Bool("print-signature-policy") {
		if fromRepo != "" || c.NArg() != 0 {
			return cliutil.Usage("--print-signature-policy takes no SOURCE or --from-repo")
		}
		sp, err := signaturePolicy(c)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.App.Writer, sp.File)
		return err
	}
	if fromRepo == "" && c.NArg() != 1 || fromRepo != "" && c.NArg() != 0 {
		return cliutil.Usage("give exactly one SOURCE, or --from-repo without one (see --help)")
	}
	// With enforcement the policy is judged before the repository is
	// opened or created: a refusal leaves nothing behind.
	var sp *sigpolicy.Policy
	if c.Bool("enforce-container-sigpolicy") {
		switch {
		case fromRepo != "":
			return cliutil.Usage("--enforce-container-sigpolicy: --from-repo fetches nothing")
		case strings.HasPrefix(c.Args().First(), cstoragePrefix):
			return cliutil.Usage("--enforce-container-sigpolicy: a containers-storage: source is checked when it is fetched into the store (skopeo copy --policy FILE), not here")
		}
		var err error
		if sp, err = signaturePolicy(c); err != nil {
			return err
		}
	}
	if _, err := pull.ResolveDecompressor(c.String("decompressor")); err != nil {
		return cliutil.Usage("--decompressor: %v", err)
	}
	// --json replaces the human summary; progress lines stay unless --quiet.
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
			return cliutil.Usage("--digest-algo: %v", aerr)
		}
		repo, err = pull.OpenOrCreate(repoPath, alg)
	}
	if err != nil {
		return err
	}
	defer repo.Close()

	var rec *stream.Image
	var tree *fstree.Dir
	var sum any
	var lines []string
	if fromRepo != "" {
		rec, tree, err = pull.FromRepository(repo, fromRepo)
	} else if name := c.Args().First(); strings.HasPrefix(name, cstoragePrefix) {
		rec, tree, sum, lines, err = fetchCStorage(c, repo, rep, name)
	} else {
		rec, tree, sum, lines, err = fetch(c, repo, rep, sp)
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
	switch out := c.String("output"); out {
	case "none":
	case "-":
		err = pull.WriteList(c.App.Writer, rec, tree, repo)
	default:
		err = pull.WriteListFile(out, rec, tree, repo)
	}
	if err != nil {
		return err
	}
	return summary(c, rep, sum, lines)
}

// summary reports a pull on stderr (stdout is the list): one JSON object
// with --json, else the human lines unless --quiet.
func summary(c *cli.Context, rep *progress.Reporter, sum any, lines []string) error {
	if sum == nil {
		return nil // --from-repo: nothing was stored
	}
	if c.Bool("json") {
		rep.Done()
		return cliutil.PrintJSON(c, sum)
	}
	for _, l := range lines {
		rep.Logf("cfs-pull: %s", l)
	}
	return nil
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

// signaturePolicy reads the policy --print-signature-policy names and
// --enforce-container-sigpolicy judges: the one a pull is checked against.
func signaturePolicy(c *cli.Context) (*sigpolicy.Policy, error) {
	enforce := c.Bool("enforce-container-sigpolicy")
	if enforce && c.Bool("insecure-policy") {
		return nil, cliutil.Usage("--enforce-container-sigpolicy and --insecure-policy exclude each other")
	}
	sp, err := sigpolicy.Load(systemContext(c), c.Bool("insecure-policy"))
	if err != nil {
		return nil, err
	}
	if enforce {
		if err := sp.AssertNotInsecure("--enforce-container-sigpolicy"); err != nil {
			return nil, err
		}
	}
	return sp, nil
}

// fetch pulls SOURCE, checked against sp when enforcement read it, else
// against the policy as containers/image finds it.
func fetch(c *cli.Context, repo *composefs.Repository, rep *progress.Reporter, sp *sigpolicy.Policy) (*stream.Image, *fstree.Dir, *pull.Summary, []string, error) {
	sys := systemContext(c)
	var policy *signature.PolicyContext
	var err error
	if sp != nil {
		policy, err = sp.Context()
	} else {
		policy, err = pull.PolicyContext(sys, c.Bool("insecure-policy"))
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer policy.Destroy()
	rule := pull.LowSpeed{Limit: c.Int64("low-speed-limit"), Time: c.Duration("low-speed-time")}
	if rule.Limit < 0 || rule.Time < 0 {
		return nil, nil, nil, nil, cliutil.Usage("--low-speed-limit and --low-speed-time cannot be negative")
	}
	src, err := pull.Open(c.Context, c.Args().First(), sys, policy, pull.WithLowSpeed(rule))
	if err != nil {
		return nil, nil, nil, nil, stallHint(err)
	}
	defer src.Close()

	res, err := pull.ToComposefs(c.Context, repo, src, pull.Options{Tag: c.String("tag"), Jobs: c.Int("jobs"), Progress: pull.Report(rep, src), Decompressor: c.String("decompressor")})
	if err != nil {
		return nil, nil, nil, nil, stallHint(err)
	}
	sum := pull.Summarize(src.Name, src.ManifestDigest, res)
	return pull.SourceRecord(src, res, repo), res.Tree, sum, sum.Lines(), nil
}

// stallHint says which flags govern a stalled download.
func stallHint(err error) error {
	var stall *pull.StallError
	if errors.As(err, &stall) {
		return cliutil.Hint(err, "a slow but working link needs a lower --low-speed-limit or a longer --low-speed-time")
	}
	return err
}

// memoryLimit bounds the Go heap of a pull unless GOMEMLIMIT says
// otherwise. Left alone, the runtime lets the heap grow to twice its live
// data between collections; a pull runs on a host being upgraded, where
// memory counts more than the few percent of CPU that collecting earlier
// near the peak (the merged tree and its EROFS image) costs. It is a soft
// limit: a larger image still pulls, with more collections. The live heap
// at the peak of a pull of 119k entries is about 80 MiB.
const memoryLimit = 96 << 20

func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
