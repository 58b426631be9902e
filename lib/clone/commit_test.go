package clone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/stream"
)

// commitList is the fixture's files followed by many small inline ones, so
// that a stage failing early leaves the others mid-stream, with /etc and
// /usr/etc (both) when etcTwice.
func commitList(t *testing.T, fx *cloneFixture, etcTwice bool) (*stream.Image, []*stream.Entry) {
	t.Helper()
	img, fixture, err := stream.ReadAll(bytes.NewReader(fx.list))
	if err != nil {
		t.Fatal(err)
	}
	entries := []*stream.Entry{fixture[0]}
	if etcTwice {
		entries = append(entries, &stream.Entry{Type: stream.TypeDir, Path: "/etc", Mode: 0o755})
	}
	entries = append(entries, fixture[1])
	if etcTwice {
		entries = append(entries, &stream.Entry{Type: stream.TypeDir, Path: "/usr/etc", Mode: 0o755})
	}
	entries = append(entries, fixture[2:]...)
	entries = append(entries, &stream.Entry{Type: stream.TypeDir, Path: "/usr/z", Mode: 0o755})
	for i := 0; i < 5000; i++ {
		data := []byte(fmt.Sprintf("small file %d", i))
		entries = append(entries, &stream.Entry{Type: stream.TypeFile, Path: fmt.Sprintf("/usr/z/%05d", i), Mode: 0o644, Size: int64(len(data)), Inline: data})
	}
	return img, entries
}

// produceList writes img and entries, the entries copied (each stage owns
// what it is handed), and fails with failAt after that many entries.
func produceList(img *stream.Image, entries []*stream.Entry, failAt int, failErr error, gotErr *error) func(stream.EntryWriter) error {
	return func(w stream.EntryWriter) error {
		err := func() error {
			if err := w.WriteImage(img); err != nil {
				return err
			}
			for i, e := range entries {
				if i == failAt {
					return failErr
				}
				c := *e
				if err := w.WriteEntry(&c); err != nil {
					return err
				}
			}
			return w.Close()
		}()
		*gotErr = err
		return err
	}
}

func commitRepos(t *testing.T, fx *cloneFixture, name string) (*ostree.Repo, *ostree.Repo) {
	t.Helper()
	a, err := ostree.Create(fx.fs.Path(name), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := ostree.Open(fx.fs.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

func noRefs(t *testing.T, repo *ostree.Repo) {
	t.Helper()
	refs, err := repo.ListRefs("")
	if err != nil || len(refs) != 0 {
		t.Errorf("refs %v (%v) after a failed pipeline, want none", refs, err)
	}
}

// Commit (the stages in one process, connected by stream pipes) writes
// the very commit the encoded pipeline ToOstree | Import writes.
func TestCommitMatchesEncodedPipeline(t *testing.T) {
	testfs.RequirePrivileged(t)
	fx := newCloneFixture(t, []int{100, 5000, 70_000}, -1, 0)
	img, entries := commitList(t, fx, false)
	iopts := ostreeimport.Options{Ref: "test/commit"}

	var list bytes.Buffer
	w := stream.NewWriter(&list)
	var perr error
	if err := produceList(img, entries, -1, nil, &perr)(w); err != nil {
		t.Fatal(err)
	}
	encRepo, _ := commitRepos(t, fx, "encoded")
	var annotated bytes.Buffer
	if _, err := ToOstree(context.Background(), encRepo, &list, &annotated, Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	want, err := ostreeimport.Import(context.Background(), encRepo, &annotated, iopts)
	if err != nil {
		t.Fatal(err)
	}

	cloneRepo, importRepo := commitRepos(t, fx, "pipes")
	sum, got, err := Commit(context.Background(), cloneRepo, importRepo, produceList(img, entries, -1, nil, &perr), Options{Workers: 2}, iopts)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != want.Commit || got.Files != want.Files || got.Files != int64(3+5000) {
		t.Errorf("in process: commit %s, %d files; encoded: commit %s, %d files", got.Commit, got.Files, want.Commit, want.Files)
	}
	if sum.Reflinked != 3 || sum.Small != 5000 {
		t.Errorf("summary: %d reflinked, %d small", sum.Reflinked, sum.Small)
	}
	if c, ok, err := importRepo.ResolveRef("test/commit"); err != nil || !ok || c != want.Commit {
		t.Errorf("ref test/commit = %s, %v (%v)", c, ok, err)
	}
}

// A stage failing part-way stops the two others (the producer's next
// write fails), Commit returns its error, and no ref is written.
func TestCommitFailingStage(t *testing.T) {
	testfs.RequirePrivileged(t)
	fx := newCloneFixture(t, []int{100, 5000, 70_000}, -1, 0)
	boom := errors.New("the producer failed")
	for _, c := range []struct {
		name     string
		etcTwice bool
		tamper   bool // a file's composefs id is not its bytes'
		failAt   int
		want     string
	}{
		{name: "producer", failAt: 2000, want: boom.Error()},
		{name: "clone", tamper: true, failAt: -1, want: "fs-verity digest"},
		{name: "import", etcTwice: true, failAt: -1, want: "/usr/etc: the image has both /etc and /usr/etc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, entries := commitList(t, fx, c.etcTwice)
			if c.tamper {
				for i, e := range entries {
					if e.Size == 5000 {
						d := *e
						d.Composefs = strings.Repeat("ab", 64)
						entries[i] = &d
					}
				}
			}
			cloneRepo, importRepo := commitRepos(t, fx, "repo-"+c.name)
			var perr error
			_, res, err := Commit(context.Background(), cloneRepo, importRepo, produceList(img, entries, c.failAt, boom, &perr), Options{Workers: 1}, ostreeimport.Options{Ref: "test/commit"})
			if err == nil || !strings.Contains(err.Error(), c.want) || res != nil {
				t.Fatalf("Commit = %v, %v; want an error naming %q", res, err, c.want)
			}
			if perr == nil {
				t.Error("the producer finished: it was not stopped")
			}
			noRefs(t, importRepo)
		})
	}
}

// A cancelled context stops the pipeline with no ref.
func TestCommitCancelled(t *testing.T) {
	testfs.RequirePrivileged(t)
	fx := newCloneFixture(t, []int{100}, -1, 0)
	img, entries := commitList(t, fx, false)
	cloneRepo, importRepo := commitRepos(t, fx, "repo")
	ctx, cancel := context.WithCancel(context.Background())
	var perr error
	produce := produceList(img, entries, -1, nil, &perr)
	_, _, err := Commit(ctx, cloneRepo, importRepo, func(w stream.EntryWriter) error {
		cancel()
		return produce(w)
	}, Options{Workers: 1}, ostreeimport.Options{Ref: "test/commit"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit = %v, want it cancelled", err)
	}
	noRefs(t, importRepo)
}
