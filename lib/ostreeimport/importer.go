package ostreeimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// Options tune Import. The zero value imports under the image's own ref.
type Options struct {
	// Ref is the ref to set; "" means ostree/container/image/<escaped
	// image reference>.
	Ref string
	// ImageReference replaces the image record's source when the ref is
	// derived (for streams read from a file, or a source named differently).
	ImageReference string
	// Now is the fallback commit time when the image names none.
	Now func() time.Time
}

// Result describes the commit Import wrote.
type Result struct {
	Commit          string    `json:"commit"`
	Ref             string    `json:"ref"`
	ContentChecksum string    `json:"contentChecksum"`
	RootTree        string    `json:"rootTree"`
	RootMeta        string    `json:"rootMeta"`
	Timestamp       time.Time `json:"timestamp"`
	Version         string    `json:"version,omitempty"`
	Kernel          string    `json:"kernel,omitempty"`
	Entries         int64     `json:"entries"`
	Files           int64     `json:"files"`
	Symlinks        int64     `json:"symlinks"`
	Dirs            int64     `json:"dirs"`
	Hardlinks       int64     `json:"hardlinks"`
	Skipped         int64     `json:"skipped"`
}

// Import reads an annotated object list from in and commits it to repo.
// The ref is set only after the stream's end record checked out and the
// commit is durable; on any error no ref is touched, and whatever objects
// were written are unreferenced (fsck-clean, removed by the next prune).
// A cancelled ctx stops it between entries, before the commit is written.
func Import(ctx context.Context, repo *ostree.Repo, in io.Reader, opts Options) (*Result, error) {
	return ImportEntries(ctx, repo, stream.NewReader(in), opts)
}

// ImportEntries is Import on a stream already decoded (a stream.Pipe's
// reader when the producer runs in the same process). The ref is set only
// once r has returned io.EOF: the producer ended the stream properly.
func ImportEntries(ctx context.Context, repo *ostree.Repo, r stream.EntryReader, opts Options) (*Result, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	img, err := r.Image()
	if err != nil {
		return nil, err
	}
	ref, err := resolveRef(img, opts)
	if err != nil {
		return nil, err
	}
	docs, err := readDocs(img, opts.Now())
	if err != nil {
		return nil, err
	}
	// The objects cfs-clone wrote are unreferenced until our commit
	// exists: hold the lock a prune needs before looking at them.
	if err := repo.LockShared(); err != nil {
		return nil, err
	}

	b := newBuilder(repo)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := b.closeDirs(r.Closed()); err != nil {
			return nil, fmt.Errorf("object list line %d: %w", r.Line(), err)
		}
		if err := b.add(e); err != nil {
			return nil, fmt.Errorf("object list line %d: %w", r.Line(), err)
		}
	}
	if err := b.closeDirs(r.Closed()); err != nil {
		return nil, fmt.Errorf("object list end: %w", err)
	}
	root, err := b.finish()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	c := ostree.Commit{
		Metadata:  commitMetadata(img, docs, b.kernel),
		Timestamp: uint64(docs.created.Unix()),
		RootTree:  root.Tree,
		RootMeta:  root.Meta,
	}
	commit, err := repo.WriteCommit(c)
	if err != nil {
		return nil, err
	}
	if err := repo.SetRef(ref, commit); err != nil {
		return nil, err
	}
	content, err := ostree.ContentChecksum(root.Tree, root.Meta)
	if err != nil {
		return nil, err
	}
	res := b.stats
	res.Commit, res.Ref, res.ContentChecksum = commit, ref, content
	res.RootTree, res.RootMeta = root.Tree, root.Meta
	res.Timestamp = time.Unix(int64(c.Timestamp), 0).UTC()
	res.Version, res.Kernel = docs.version, b.kernel
	return &res, nil
}

// ErrNotAnnotated is wrapped by the error for a file entry without its
// ostree checksum: the list did not pass through a clone into ostree.
var ErrNotAnnotated = errors.New("no ostree checksum")

// ErrNoImageReference: the image record has no source, and no ref or image
// reference was given to name the ref after.
var ErrNoImageReference = errors.New("the image record has no source to name the ref after")

func resolveRef(img *stream.Image, opts Options) (string, error) {
	if opts.Ref != "" {
		if err := ostree.ValidateRefName(opts.Ref); err != nil {
			return "", fmt.Errorf("ref %q: %w", opts.Ref, err)
		}
		return opts.Ref, nil
	}
	src := opts.ImageReference
	if src == "" {
		src = img.Source
	}
	if src == "" {
		return "", ErrNoImageReference
	}
	ref, err := ostree.ImageRef(src)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", src, err)
	}
	return ref, nil
}

// kernelPath matches /usr/lib/modules/<version>/vmlinuz, where ostree and
// bootc look for the kernel.
func kernelVersion(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/usr/lib/modules/")
	if !ok {
		return "", false
	}
	kver, file, ok := strings.Cut(rest, "/")
	return kver, ok && file == "vmlinuz" && kver != ""
}

// parentName splits an entry path into its parent directory and name.
func parentName(p string) (string, string) {
	dir, name := path.Split(p)
	if dir != "/" {
		dir = dir[:len(dir)-1]
	}
	return dir, name
}
