package reflink

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"golang.org/x/sys/unix"
)

// These tests run on loop-mounted filesystems and skip without root (fail
// with CFS_REQUIRE_PRIVILEGED=1). FIEMAP's SHARED flag is the oracle for
// "extents are shared", and sha256 for "content is identical".

var reflinkCapable = map[string]bool{"xfs": true, "btrfs": true, "ext4": false, "tmpfs": false}

const fewMiB = 3<<20 + 17 // not a multiple of the block size, so EOF is unaligned

func TestAlwaysSharesExtents(t *testing.T) {
	testfs.RequirePrivileged(t)
	for _, fstype := range []string{"xfs", "btrfs"} {
		t.Run(fstype, func(t *testing.T) {
			fs := testfs.New(t, fstype, 0)
			src, dst := fs.Path("src"), fs.Path("dst")
			writeRandom(t, src, fewMiB)
			if r, err := Clone(dst, src, Always); err != nil || r != Cloned {
				t.Fatalf("Clone(Always) = %v, %v", r, err)
			}
			requireSameContent(t, dst, src)

			srcExtents, dstExtents := mustExtents(t, src), mustExtents(t, dst)
			if len(srcExtents) == 0 {
				t.Fatal("source has no extents")
			}
			for _, e := range slices.Concat(srcExtents, dstExtents) {
				if !e.Shared() {
					t.Errorf("extent %+v is not SHARED", e)
				}
			}
			if !slices.Equal(physical(srcExtents), physical(dstExtents)) {
				t.Errorf("physical ranges differ:\nsrc %v\ndst %v", physical(srcExtents), physical(dstExtents))
			}
			for _, p := range []string{src, dst} {
				shared, total, err := SharedBytes(open(t, p))
				if err != nil || shared != fewMiB || total != fewMiB {
					t.Errorf("SharedBytes(%s) = %d, %d, %v; want %d of %d", p, shared, total, err, fewMiB, fewMiB)
				}
			}
		})
	}
}

func TestAlwaysRefusedLeavesNothing(t *testing.T) {
	testfs.RequirePrivileged(t)
	for _, fstype := range []string{"ext4", "tmpfs"} {
		t.Run(fstype, func(t *testing.T) {
			fs := testfs.New(t, fstype, 0)
			src, dst := fs.Path("src"), fs.Path("dst")
			writeRandom(t, src, 4097)
			r, err := Clone(dst, src, Always)
			if err == nil {
				t.Fatalf("Clone(Always) on %s succeeded with %v", fstype, r)
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, unix.EOPNOTSUPP) {
				t.Errorf("error should match ErrRefused and EOPNOTSUPP: %v", err)
			}
			for _, want := range []string{dst, src, fstype + " filesystem refused FICLONE", "(EOPNOTSUPP)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			// Which flag allows a copy is the command's business.
			if strings.Contains(err.Error(), "--") {
				t.Errorf("library error names a flag: %v", err)
			}
			requireAbsent(t, dst)
			assertOnlyFiles(t, fs.Dir, onlyFilesOn(fstype, "src")...)
		})
	}
}

func TestAlwaysAcrossFilesystemsIsEXDEV(t *testing.T) {
	testfs.RequirePrivileged(t)
	from, to := testfs.XFS(t, 0), testfs.Btrfs(t, 0)
	src, dst := from.Path("src"), to.Path("dst")
	writeRandom(t, src, fewMiB)

	_, err := Clone(dst, src, Always)
	if err == nil {
		t.Fatal("Clone(Always) from XFS to btrfs succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, unix.EXDEV) {
		t.Errorf("error should match ErrRefused and EXDEV: %v", err)
	}
	for _, want := range []string{dst, src, "different filesystems", "source (xfs)", "destination (btrfs)", "(EXDEV)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	requireAbsent(t, dst)
	assertOnlyFiles(t, to.Dir)

	var stats Stats
	r, err := Clone(dst, src, Auto)
	if err != nil || r != Copied {
		t.Fatalf("Clone(Auto) across filesystems = %v, %v; want Copied", r, err)
	}
	stats.Add(r, fewMiB)
	requireSameContent(t, dst, src)
	if shared, _, err := SharedBytes(open(t, dst)); err != nil || shared != 0 {
		t.Errorf("copy on btrfs has %d shared bytes (%v)", shared, err)
	}
	if got := stats.Snapshot(); got != (Stats{Copied: 1, CopiedBytes: fewMiB}) {
		t.Errorf("stats %+v", got)
	}
}

// Auto clones where it can and copies where it cannot, and says which.
func TestAutoResultAndStats(t *testing.T) {
	testfs.RequirePrivileged(t)
	var stats Stats
	for _, fstype := range testfs.Types {
		t.Run(fstype, func(t *testing.T) {
			fs := testfs.New(t, fstype, 0)
			src, dst := fs.Path("src"), fs.Path("dst")
			writeRandom(t, src, fewMiB)
			r, err := Clone(dst, src, Auto)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]Result{true: Cloned, false: Copied}[reflinkCapable[fstype]]
			if r != want {
				t.Errorf("Clone(Auto) on %s = %v, want %v", fstype, r, want)
			}
			stats.Add(r, fewMiB)
			requireSameContent(t, dst, src)
		})
	}
	want := Stats{Cloned: 2, ClonedBytes: 2 * fewMiB, Copied: 2, CopiedBytes: 2 * fewMiB}
	if got := stats.Snapshot(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// Never must produce an independent copy even where Go's own io.Copy would
// have reflinked behind our back.
func TestNeverSharesNothing(t *testing.T) {
	testfs.RequirePrivileged(t)
	for _, fstype := range []string{"xfs", "btrfs"} {
		t.Run(fstype, func(t *testing.T) {
			fs := testfs.New(t, fstype, 0)
			src, dst := fs.Path("src"), fs.Path("dst")
			writeRandom(t, src, fewMiB)
			if r, err := Clone(dst, src, Never); err != nil || r != Copied {
				t.Fatalf("Clone(Never) = %v, %v", r, err)
			}
			requireSameContent(t, dst, src)
			for _, p := range []string{src, dst} {
				shared, total, err := SharedBytes(open(t, p))
				if err != nil || shared != 0 || total != fewMiB {
					t.Errorf("SharedBytes(%s) = %d shared of %d (%v); want 0 of %d", p, shared, total, err, fewMiB)
				}
			}
		})
	}
}

// Every policy a filesystem allows gives byte-identical results, for the
// sizes where block and EOF handling go wrong.
func TestContentIdentical(t *testing.T) {
	testfs.RequirePrivileged(t)
	sizes := []int64{0, 1, 4096, 4097, fewMiB}
	for _, fstype := range testfs.Types {
		t.Run(fstype, func(t *testing.T) {
			fs := testfs.New(t, fstype, 0)
			policies := []Policy{Auto, Never}
			if reflinkCapable[fstype] {
				policies = append(policies, Always)
			}
			for _, size := range sizes {
				src := fs.Path(fmt.Sprintf("src-%d", size))
				writeRandom(t, src, size)
				for _, p := range policies {
					dst := fs.Path(fmt.Sprintf("dst-%d-%v", size, p))
					if _, err := Clone(dst, src, p); err != nil {
						t.Fatalf("size %d, %v: %v", size, p, err)
					}
					requireSameContent(t, dst, src)
				}
			}

			// 1 MiB of data, a 7 MiB hole, 4097 bytes, then a 4 MiB hole to EOF.
			src := fs.Path("sparse")
			writeSparse(t, src, 12<<20, map[int64][]byte{
				0:       []byte(strings.Repeat("d", 1<<20)),
				8 << 20: []byte(strings.Repeat("e", 4097)),
			})
			for _, p := range policies {
				dst := fs.Path("sparse-" + p.String())
				if _, err := Clone(dst, src, p); err != nil {
					t.Fatalf("sparse, %v: %v", p, err)
				}
				requireSameContent(t, dst, src)
				var st unix.Stat_t
				if err := unix.Stat(dst, &st); err != nil {
					t.Fatal(err)
				}
				if allocated := st.Blocks * 512; allocated >= 8<<20 {
					t.Errorf("sparse copy (%v) allocated %d bytes for ~1 MiB of data", p, allocated)
				}
			}
		})
	}
}

func TestSupported(t *testing.T) {
	testfs.RequirePrivileged(t)
	for _, fstype := range testfs.Types {
		t.Run(fstype, func(t *testing.T) {
			fs := testfs.New(t, fstype, 0)
			before := probeCount.Load()
			ok, err := Supported(fs.Dir)
			if err != nil || ok != reflinkCapable[fstype] {
				t.Fatalf("Supported(%s) = %v, %v; want %v", fstype, ok, err, reflinkCapable[fstype])
			}
			if probeCount.Load() != before+1 {
				t.Fatalf("first Supported on a new filesystem did not probe")
			}
			sub := fs.Path("sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, dir := range []string{fs.Dir, sub} {
				if again, err := Supported(dir); err != nil || again != ok {
					t.Errorf("Supported(%s) second time = %v, %v", dir, again, err)
				}
			}
			if n := probeCount.Load() - before; n != 1 {
				t.Errorf("probed %d times, want 1 (answer should be cached per filesystem)", n)
			}
			// The probe's files must not outlive it.
			assertOnlyFiles(t, fs.Dir, onlyFilesOn(fstype, "sub")...)
		})
	}
}

func TestSharedBytesUnsupportedOnTmpfs(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.Tmpfs(t, 0)
	p := fs.Path("f")
	writeRandom(t, p, 4096)
	_, _, err := SharedBytes(open(t, p))
	if !errors.Is(err, ErrFiemapUnsupported) || !errors.Is(err, unix.EOPNOTSUPP) || !strings.Contains(err.Error(), "tmpfs") {
		t.Errorf("SharedBytes on tmpfs = %v, want ErrFiemapUnsupported naming tmpfs", err)
	}
}

// FIEMAP answers in batches of fiemapBatch; a file with more extents than
// that must come back whole.
func TestExtentsMoreThanOneBatch(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	p := fs.Path("many")
	chunks := map[int64][]byte{}
	for i := range int64(3 * fiemapBatch) {
		chunks[i*8192] = []byte(strings.Repeat("x", 4096)) // data, hole, data, hole…
	}
	writeSparse(t, p, 3*fiemapBatch*8192, chunks)
	extents := mustExtents(t, p)
	// XFS may also report preallocated, unwritten extents in the holes.
	written := slices.DeleteFunc(slices.Clone(extents), func(e Extent) bool { return e.Flags&ExtentUnwritten != 0 })
	if len(written) != 3*fiemapBatch {
		t.Fatalf("got %d written extents, want %d: %v", len(written), 3*fiemapBatch, extents)
	}
	for i, e := range written {
		if e.Logical != uint64(i)*8192 || e.Length != 4096 {
			t.Fatalf("extent %d is %+v, want 4096 bytes at %d", i, e, i*8192)
		}
	}
	if extents[len(extents)-1].Flags&ExtentLast == 0 {
		t.Error("last extent lacks FIEMAP_EXTENT_LAST")
	}
}

func mustExtents(t *testing.T, path string) []Extent {
	t.Helper()
	extents, err := Extents(open(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return extents
}

func physical(extents []Extent) []string {
	var out []string
	for _, e := range extents {
		out = append(out, fmt.Sprintf("%d@%d+%d", e.Logical, e.Physical, e.Length))
	}
	return out
}

// onlyFilesOn adds what mkfs itself puts in a fresh filesystem's root.
func onlyFilesOn(fstype string, names ...string) []string {
	if fstype == "ext4" {
		names = append(names, "lost+found")
	}
	slices.Sort(names)
	return names
}
