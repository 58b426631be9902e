package clone

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// The clone looks up every file's src ahead of the worker that clones it,
// in list order, and reading the list ahead keeps its order: a list longer
// than the look-ahead, with files before and after it, comes out entry
// for entry, every file cloned and every src looked up once.
func TestToOstreeLooksUpSourcesAhead(t *testing.T) {
	testfs.RequirePrivileged(t)
	sizes := []int{65, 4096, 100_000, 5000, 70_000, 65, 1 << 20, 200}
	fx := newCloneFixture(t, sizes, -1, 0)
	var mu sync.Mutex
	var looked []string
	old := prefetchLookup
	prefetchLookup = func(path string) {
		mu.Lock()
		looked = append(looked, path)
		mu.Unlock()
		old(path)
	}
	t.Cleanup(func() { prefetchLookup = old })

	// Half the files, then more directories than the look-ahead holds,
	// then the other half.
	var in []*stream.Entry
	in = append(in, &stream.Entry{Type: stream.TypeDir, Path: "/", Mode: 0o755}, &stream.Entry{Type: stream.TypeDir, Path: "/usr", Mode: 0o755})
	var want []string
	for i, e := range fx.entries {
		c := *e
		if i < len(sizes)/2 {
			c.Path = fmt.Sprintf("/usr/a%02d", i)
		}
		in = append(in, &c)
		if i == len(sizes)/2-1 {
			for d := 0; d < aheadPerWorker*2+500; d++ {
				in = append(in, &stream.Entry{Type: stream.TypeDir, Path: fmt.Sprintf("/usr/d%05d", d), Mode: 0o755})
			}
		}
		if c.Size > stream.InlineMax {
			want = append(want, c.Src)
		}
	}
	r := stream.NewReader(bytes.NewReader(fx.list))
	img, err := r.Image()
	if err != nil {
		t.Fatal(err)
	}
	var list bytes.Buffer
	w := stream.NewWriter(&list)
	if err := w.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	for _, e := range in {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	repo, err := ostree.Create(fx.fs.Path("repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	var out bytes.Buffer
	sum, err := ToOstree(context.Background(), repo, &list, &out, Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := stream.ReadAll(&out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d entries out, %d in", len(got), len(in))
	}
	for i := range in {
		if got[i].Path != in[i].Path {
			t.Fatalf("entry %d is %s, want %s", i, got[i].Path, in[i].Path)
		}
		if got[i].Type == stream.TypeFile && got[i].Ostree == "" {
			t.Errorf("%s: no ostree checksum", got[i].Path)
		}
	}
	if n := sum.Reflinked + sum.Present; n != int64(len(sizes)) {
		t.Errorf("%d files cloned or present, want %d", n, len(sizes))
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(looked, want) {
		t.Errorf("sources looked up ahead:\n%q\nwant, in list order:\n%q", looked, want)
	}
}

// Eight workers per CPU by default: they wait on the disk more than they
// compute, and four per CPU left it idle on the 100k-entry image.
func TestDefaultWorkers(t *testing.T) {
	if got, want := DefaultWorkers(), 8*runtime.GOMAXPROCS(0); got != want {
		t.Errorf("DefaultWorkers() = %d, want %d", got, want)
	}
}
