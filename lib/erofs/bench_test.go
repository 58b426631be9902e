package erofs_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// bigTree is an OS-image-like tree of n entries: directories of ~40
// entries, mostly external files with SHA-512 ids, some inline files and
// symlinks, SELinux labels (shared xattrs) on everything.
func bigTree(n int) *erofs.Node {
	root := erofs.NewDir("", 0o755)
	labels := [][]byte{[]byte("system_u:object_r:usr_t:s0"), []byte("system_u:object_r:bin_t:s0"), []byte("system_u:object_r:lib_t:s0")}
	dirs := []*erofs.Node{root}
	id := make([]byte, 64)
	for i := 1; i < n; i++ {
		parent := dirs[(i-1)/40]
		name := fmt.Sprintf("entry-%07d.so.%d", i, i%7)
		var nd *erofs.Node
		switch {
		case i%10 == 0:
			nd = erofs.NewDir(name, 0o755)
			dirs = append(dirs, nd)
		case i%10 == 1:
			nd = &erofs.Node{Name: name, Mode: erofs.TypeSymlink | 0o777, Payload: "../lib64/" + name}
		case i%10 == 2:
			nd = &erofs.Node{Name: name, Mode: erofs.TypeRegular | 0o644, Size: 40, Content: []byte(strings.Repeat("c", 40))}
		default:
			copy(id, fmt.Sprintf("%064d", i))
			nd = &erofs.Node{Name: name}
			nd.SetExternal(id, uint64(100+i*37))
			nd.Mode |= 0o755
		}
		nd.MtimeSec = 1700000000
		nd.Xattrs = []erofs.Xattr{{Name: "security.selinux", Value: labels[i%3]}}
		if err := parent.AddChild(nd); err != nil {
			panic(err)
		}
		if len(dirs) <= (i)/40 {
			d := erofs.NewDir(fmt.Sprintf("dir-%07d", i), 0o755)
			_ = parent.AddChild(d)
			dirs = append(dirs, d)
		}
	}
	return root
}

// cpuSeconds is the process's user+system CPU time: on a shared, loaded
// machine it is steadier than wall time.
func cpuSeconds() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func vmHWM() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkMkfs100k writes the image of a 100k-entry tree to a file and
// computes its fs-verity digest, as cfs-image mkfs does. Reported:
// seconds per image, the process's peak RSS and the bytes allocated.
func BenchmarkMkfs100k(b *testing.B) {
	root := bigTree(100000)
	out := filepath.Join(b.TempDir(), "img.cfs")
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	cpu0 := cpuSeconds()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := erofs.WriteFile(out, root, erofs.V1, fsverity.SHA512); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	fi, _ := os.Stat(out)
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/image")
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/image")
	b.ReportMetric(vmHWM(), "peak-RSS-MiB")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/image")
	b.ReportMetric(float64(fi.Size())/(1<<20), "image-MiB")
}

// BenchmarkWrite100k is the CPU part of mkfs alone: encoding the image and
// hashing it, without the file system.
func BenchmarkWrite100k(b *testing.B) {
	root := bigTree(100000)
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		h := fsverity.New(fsverity.SHA512)
		if err := erofs.Write(h, root, erofs.V1); err != nil {
			b.Fatal(err)
		}
		h.Sum(nil)
	}
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/image")
	b.ReportMetric(vmHWM(), "peak-RSS-MiB")
}

// BenchmarkMkfsFromDir100k is cfs-image mkfs on a directory of 100k
// entries (1000 dirs of 99 files; one file in ten is external and hashed).
// Only WriteDir into WriteFileWith is timed, not creating the tree.
func BenchmarkMkfsFromDir100k(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	small := []byte("small file contents\n")
	big := make([]byte, 4000)
	for d := 0; d < 1000; d++ {
		dir := filepath.Join(src, fmt.Sprintf("dir%04d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 99; f++ {
			data := small
			if f%10 == 0 {
				copy(big, fmt.Sprintf("%d/%d", d, f))
				data = big
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d", f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	out := filepath.Join(b.TempDir(), "img.cfs")
	b.ResetTimer()
	cpu0 := cpuSeconds()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		write := func(w io.Writer) error {
			return erofs.WriteDir(w, src, erofs.DirOptions{Algorithm: fsverity.SHA512}, erofs.V1)
		}
		if _, err := erofs.WriteFileWith(out, fsverity.SHA512, write); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/image")
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/image")
	b.ReportMetric(vmHWM(), "peak-RSS-MiB")
}
