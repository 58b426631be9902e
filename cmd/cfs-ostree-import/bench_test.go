package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/diskacct"
	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/stream"
)

// shell runs a bash command line and returns its wall time.
func shell(b *testing.B, script string) time.Duration {
	b.Helper()
	cmd := exec.Command(testfs.RequireTool(b, "bash"), "-o", "pipefail", "-c", script)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, errb.Bytes())
	}
	return time.Since(start)
}

func usedBytes(b *testing.B, dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// unsharedBytes adds up the blocks the files and directories under root
// hold that no other file shares (FIEMAP): the data the repository costs
// on top of the composefs objects. Inode tables are not in it; the statfs
// difference beside it counts those too.
func unsharedBytes(b *testing.B, root string) int64 {
	u, err := diskacct.Walk(root, func(string) bool { return true })
	if err != nil {
		b.Fatal(err)
	}
	return u.DirBytes + u.BodyBytes + u.MetaBytes + u.PastExtents
}

func readKiB(path string) int64 {
	var n int64
	if text, err := os.ReadFile(path); err == nil {
		fmt.Sscan(string(text), &n)
	}
	return n
}

// dropCaches makes every timed run start cold, so neither side profits
// from what the one before read.
func dropCaches() {
	unix.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// BenchmarkCloneImportLarge: the ~1 GiB, 30k-file image, already in a
// composefs repo on loop XFS, into a bare ostree repo on the same
// filesystem, with `cfs-clone --to ostree | cfs-ostree-import`, beside
// `ostree commit --tree=dir=` of the same tree checked out. Targets: ≤ 0.5x
// ostree's wall time, extra disk < 2% of the image, peak RSS < 200 MiB.
func BenchmarkCloneImportLarge(b *testing.B) {
	testfs.RequirePrivileged(b)
	gnuTime := testfs.RequireTool(b, "time")
	testfs.RequireTool(b, "ostree")
	img, err := testimage.Large(1)
	if err != nil {
		b.Fatal(err)
	}
	fs := testfs.XFS(b, 8<<30)
	list := pullList(b, img, fs.Path("composefs"))
	_, entries := readList(b, list)
	var imageBytes int64
	var files int
	for _, e := range entries {
		if e.Type == stream.TypeFile {
			imageBytes += e.Size
			files++
		}
	}
	listFile := filepath.Join(b.TempDir(), "list")
	if err := os.WriteFile(listFile, list, 0o644); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		dir := fs.Path(fmt.Sprintf("run%d", i))
		os.Mkdir(dir, 0o755)
		repo, oracle := filepath.Join(dir, "repo"), filepath.Join(dir, "oracle")
		initRepo(b, repo, "bare")
		initRepo(b, oracle, "bare")
		tmp := b.TempDir()
		rssClone, rssImport := filepath.Join(tmp, "rss-clone"), filepath.Join(tmp, "rss-import")

		dropCaches()
		before := usedBytes(b, fs.Dir)
		ours := shell(b, fmt.Sprintf("%s -f %%M -o %s %s --to ostree --repo %s -q < %s | %s -f %%M -o %s %s --repo %s > /dev/null",
			gnuTime, rssClone, bins["cfs-clone"], repo, listFile, gnuTime, rssImport, bins["cfs-ostree-import"], repo))
		unix.Sync()
		extra := usedBytes(b, fs.Dir) - before
		unshared := unsharedBytes(b, repo)

		ref := strings.TrimSpace(refs(b, repo))
		checkout := filepath.Join(dir, "checkout")
		mustRun(b, nil, "ostree", "checkout", "--repo="+repo, ref, checkout)
		dropCaches()
		theirs := shell(b, fmt.Sprintf("ostree commit --repo=%s --tree=dir=%s -b oracle --no-bindings --timestamp=@1700000000 > /dev/null", oracle, checkout))

		ratio := ours.Seconds() / theirs.Seconds()
		rss := max(readKiB(rssClone), readKiB(rssImport))
		b.ReportMetric(ours.Seconds(), "s-cfs")
		b.ReportMetric(theirs.Seconds(), "s-ostree-commit")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(100*float64(unshared)/float64(imageBytes), "%-unshared-data")
		b.ReportMetric(100*float64(extra)/float64(imageBytes), "%-statfs-delta")
		b.ReportMetric(float64(rss)/1024, "MiB-rss")
		b.Logf("%d files, %.0f MiB: cfs-clone|cfs-ostree-import %.2f s (peak RSS clone %d MiB, import %d MiB), ostree commit --tree=dir= %.2f s; ratio %.2f (target <= 0.5)",
			files, float64(imageBytes)/(1<<20), ours.Seconds(), readKiB(rssClone)/1024, readKiB(rssImport)/1024, theirs.Seconds(), ratio)
		b.Logf("extra disk: repository data not shared with composefs %.1f MiB = %.2f%% of the image (target < 2%%); filesystem usage grew %.1f MiB = %.2f%%, which adds XFS's 512-byte inode per object (%d objects = %.1f MiB)",
			float64(unshared)/(1<<20), 100*float64(unshared)/float64(imageBytes), float64(extra)/(1<<20), 100*float64(extra)/float64(imageBytes), files, float64(files*512)/(1<<20))
		os.RemoveAll(dir)
	}
}

// BenchmarkPeakRSS100k: a synthetic list of 100k files (small, so the
// bytes travel inline and the run stays short) through cfs-clone and
// cfs-ostree-import, for the peak RSS of each (target < 200 MiB): memory
// must follow the tree's depth, not its file count.
func BenchmarkPeakRSS100k(b *testing.B) {
	testfs.RequirePrivileged(b)
	gnuTime := testfs.RequireTool(b, "time")
	testfs.RequireTool(b, "ostree")
	fs := testfs.XFS(b, 8<<30)
	cfg, man := `{"created":"2024-01-01T00:00:00Z"}`, `{"schemaVersion":2}`
	var list bytes.Buffer
	w := stream.NewWriter(&list)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(w.WriteImage(&stream.Image{Source: "docker://example.com/rss:100k", ManifestDigest: digestOf(man), ConfigDigest: digestOf(cfg), Manifest: man, Config: cfg}))
	must(w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: "/", Mode: 0o755}))
	must(w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: "/usr", Mode: 0o755}))
	const dirs, perDir = 100, 1000
	for d := 0; d < dirs; d++ {
		dir := fmt.Sprintf("/usr/d%03d", d)
		must(w.WriteEntry(&stream.Entry{Type: stream.TypeDir, Path: dir, Mode: 0o755}))
		for f := 0; f < perDir; f++ {
			content := fmt.Sprintf("file %d/%d\n", d, f)
			must(w.WriteEntry(&stream.Entry{Type: stream.TypeFile, Path: fmt.Sprintf("%s/f%04d", dir, f), Mode: 0o644, Size: int64(len(content)), Inline: []byte(content)}))
		}
	}
	must(w.Close())
	listFile := filepath.Join(b.TempDir(), "list")
	must(os.WriteFile(listFile, list.Bytes(), 0o644))
	for i := 0; i < b.N; i++ {
		repo := fs.Path(fmt.Sprintf("repo%d", i))
		initRepo(b, repo, "bare")
		tmp := b.TempDir()
		rssClone, rssImport := filepath.Join(tmp, "rss-clone"), filepath.Join(tmp, "rss-import")
		wall := shell(b, fmt.Sprintf("%s -f %%M -o %s %s --to ostree --repo %s -q < %s | %s -f %%M -o %s %s --repo %s > /dev/null",
			gnuTime, rssClone, bins["cfs-clone"], repo, listFile, gnuTime, rssImport, bins["cfs-ostree-import"], repo))
		b.ReportMetric(float64(readKiB(rssClone))/1024, "MiB-rss-clone")
		b.ReportMetric(float64(readKiB(rssImport))/1024, "MiB-rss-import")
		b.Logf("%d files: %.1f s, peak RSS cfs-clone %d MiB, cfs-ostree-import %d MiB (target < 200 MiB)",
			dirs*perDir, wall.Seconds(), readKiB(rssClone)/1024, readKiB(rssImport)/1024)
	}
}
