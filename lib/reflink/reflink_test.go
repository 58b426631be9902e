package reflink

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// These tests need no root: they run on whatever filesystem holds TMPDIR
// and use only behaviour that holds everywhere.

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{Always, Auto, Never} {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
		var q Policy
		if text, err := p.MarshalText(); err != nil || q.UnmarshalText(text) != nil || q != p {
			t.Errorf("text round trip of %v gave %v (%v)", p, q, err)
		}
	}
	if p, err := ParsePolicy("AUTO"); err != nil || p != Auto {
		t.Errorf("ParsePolicy is case-sensitive: %v, %v", p, err)
	}
	for _, bad := range []string{"", "yes", "enabled"} {
		if _, err := ParsePolicy(bad); err == nil || !strings.Contains(err.Error(), "always, auto or never") {
			t.Errorf("ParsePolicy(%q) error %v should list the valid policies", bad, err)
		}
	}
	var zero Policy
	if _, err := zero.MarshalText(); err == nil {
		t.Error("the zero Policy must not marshal: it is not a choice")
	}
}

func TestStatsConcurrentAdd(t *testing.T) {
	var s Stats
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				s.Add(Cloned, 3)
				s.Add(Copied, 5)
				s.Add(0, 1000) // a failed clone counts as nothing
			}
		})
	}
	wg.Wait()
	want := Stats{Cloned: 8000, ClonedBytes: 24000, Copied: 8000, CopiedBytes: 40000}
	if got := s.Snapshot(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if got := s.String(); got != "8000 cloned (24000 bytes), 8000 copied (40000 bytes)" {
		t.Errorf("String() = %q", got)
	}
}

func TestErrnoName(t *testing.T) {
	for errno, want := range map[unix.Errno]string{unix.EOPNOTSUPP: "EOPNOTSUPP", unix.EXDEV: "EXDEV", unix.EINVAL: "EINVAL"} {
		if got := errnoName(errno); got != want {
			t.Errorf("errnoName(%d) = %q, want %q", errno, got, want)
		}
	}
}

// The kernel reads and writes these structs in place, so their layout must
// match <linux/fiemap.h> exactly.
func TestFiemapLayout(t *testing.T) {
	if got := unsafe.Sizeof(fiemapExtent{}); got != 56 {
		t.Errorf("sizeof(fiemap_extent) = %d, want 56", got)
	}
	if got := unsafe.Offsetof(fiemapRequest{}.Extents); got != 32 {
		t.Errorf("offsetof(fm_extents) = %d, want 32", got)
	}
	if got := unsafe.Offsetof(fiemapExtent{}.Flags); got != 40 {
		t.Errorf("offsetof(fe_flags) = %d, want 40", got)
	}
}

func TestCloneRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeRandom(t, src, 100)
	if err := os.WriteFile(dst, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Policy{Auto, Never} {
		if _, err := Clone(dst, src, p); !errors.Is(err, os.ErrExist) {
			t.Errorf("Clone(%v) over an existing file: %v, want EEXIST", p, err)
		}
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep me" {
		t.Errorf("existing destination was changed to %q", b)
	}
	assertOnlyFiles(t, dir, "dst", "src")
}

func TestCloneRejectsSameFileAndBadPolicy(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	writeRandom(t, p, 4097)
	before, _ := digest(t, p)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := CloneFile(f, f, Never); err == nil || !strings.Contains(err.Error(), "same file") {
		t.Errorf("CloneFile(f, f) = %v, want a same-file error", err)
	}
	if after, _ := digest(t, p); after != before {
		t.Error("cloning a file onto itself changed it")
	}
	if _, err := Clone(filepath.Join(dir, "g"), p, 0); err == nil || !strings.Contains(err.Error(), "invalid policy") {
		t.Errorf("Clone with the zero Policy = %v, want an invalid-policy error", err)
	}
	assertOnlyFiles(t, dir, "f")
}

// The mode is copied exactly, not filtered through the umask, because
// stores such as ostree's bare repos check object modes.
func TestCloneCopiesPermissionBits(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeRandom(t, src, 10)
	if err := os.Chmod(src, 0o775); err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dst := filepath.Join(dir, "dst")
	if _, err := Clone(dst, src, Never); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o775 {
		t.Errorf("dst mode %v (err %v), want 0775", fi.Mode(), err)
	}
}

// CloneFile onto an existing, longer file must not leave its tail behind.
func TestCloneFileReplacesLongerContent(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeRandom(t, src, 4097)
	writeRandom(t, dst, 3<<20)
	d, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, p := range []Policy{Auto, Never} {
		if _, err := CloneFile(d, open(t, src), p); err != nil {
			t.Fatal(err)
		}
		requireSameContent(t, dst, src)
	}
}

// A sparse file larger than 2 GiB: offsets past 2^31 must survive the copy,
// and the holes must stay holes rather than become gigabytes of zeros.
func TestCopyLargeSparseFile(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 6 GiB of (mostly hole) data")
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	const size = 3<<30 + 12345
	writeSparse(t, src, size, map[int64][]byte{
		0:              []byte("head"),
		2<<30 + 1:      []byte("past two gibibytes"),
		size - 100<<10: []byte(strings.Repeat("tail", 1000)),
	})
	if r, err := Clone(dst, src, Never); err != nil || r != Copied {
		t.Fatalf("Clone = %v, %v", r, err)
	}
	requireSameLargeContent(t, dst, src)
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if allocated := st.Blocks * 512; allocated > 16<<20 {
		t.Errorf("copy allocated %d bytes for a file with ~100 KiB of data: holes were filled", allocated)
	}
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s holds %v, want exactly %v (a temporary file left behind?)", dir, got, want)
	}
}

// Without O_TMPFILE, Clone builds dst under a hidden name; that name must be
// gone whether the clone succeeds or fails.
func TestCloneWithoutTmpfile(t *testing.T) {
	testWithoutTmpfile = true
	defer func() { testWithoutTmpfile = false }()
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeRandom(t, src, 4097)
	if r, err := Clone(dst, src, Never); err != nil || r != Copied {
		t.Fatalf("Clone = %v, %v", r, err)
	}
	requireSameContent(t, dst, src)
	if _, err := Clone(dst, src, Never); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Clone: %v, want EEXIST", err)
	}
	assertOnlyFiles(t, dir, "dst", "src")
}
