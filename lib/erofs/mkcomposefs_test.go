package erofs_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// dirVectors is the sha256 of the image the C mkcomposefs (composefs
// 1.0.8) writes for each tree genDir makes, keyed
// "seed<N>-v<V>-<names|hardlinks>":
//   - names: `mkcomposefs --min-version=V --max-version=V DIR IMAGE`, every
//     name its own inode;
//   - hardlinks: `mkcomposefs --from-file` of DIR's dumpfile in which the
//     names of one inode are hardlinks of the first in dumpfile order
//     (composefs-rs's read_filesystem merges them that way).
//
// Setting CFS_MKCOMPOSEFS to a mkcomposefs binary checks the figures
// against it as well and prints them.
const dirVectors = "testdata/mkcomposefs-dir.sha256"

var dirSeeds = []int64{1, 2, 3}

// TestMkcomposefsDir builds images from generated directories with
// hardlinks, by default and with Hardlinks, and compares them with the
// images mkcomposefs writes.
func TestMkcomposefsDir(t *testing.T) {
	want := readDirVectors(t)
	fs := testfs.Tmpfs(t, 256*testfs.MiB)
	oracle := os.Getenv("CFS_MKCOMPOSEFS")
	for _, seed := range dirSeeds {
		dir := fs.Path(fmt.Sprintf("tree%d", seed))
		genDir(t, dir, seed)
		for _, v := range []int{0, 1} {
			opts := erofs.Options{Version: v, MaxVersion: v}
			for _, hardlinks := range []bool{false, true} {
				kind := map[bool]string{false: "names", true: "hardlinks"}[hardlinks]
				name := fmt.Sprintf("seed%d-v%d-%s", seed, v, kind)
				t.Run(name, func(t *testing.T) {
					root, err := erofs.FromDir(dir, erofs.DirOptions{Algorithm: fsverity.SHA256, Hardlinks: hardlinks})
					if err != nil {
						t.Fatal(err)
					}
					got := sha256Hex(buildImage(t, root, opts))
					// WriteDir, which cfs-image mkfs uses, makes the
					// same bytes without the tree, also where the
					// filesystem does not tell the entry types.
					for _, stat := range []bool{false, true} {
						*erofs.StatEveryEntry = stat
						var direct bytes.Buffer
						err := erofs.WriteDir(&direct, dir, erofs.DirOptions{Algorithm: fsverity.SHA256, Hardlinks: hardlinks}, opts)
						*erofs.StatEveryEntry = false
						if err != nil {
							t.Fatal(err)
						}
						if d := sha256Hex(direct.Bytes()); d != got {
							t.Errorf("WriteDir (stat every entry: %v) wrote an image with sha256 %s, Write of FromDir's tree %s", stat, d, got)
						}
					}
					if oracle != "" {
						c := mkcomposefs(t, oracle, dir, v, hardlinks)
						t.Logf("mkcomposefs: %s %s", name, c)
						if c != want[name] {
							t.Errorf("%s says %s, %s says %s", oracle, c, dirVectors, want[name])
						}
					}
					if w, ok := want[name]; !ok {
						t.Errorf("%s has no %s", dirVectors, name)
					} else if got != w {
						t.Errorf("image sha256 %s, mkcomposefs wrote %s", got, w)
					}
					if !hardlinks {
						_ = erofs.Walk(root, func(p string, n *erofs.Node) error {
							if n.LinkTo != nil {
								t.Errorf("%s is a hardlink without Hardlinks", p)
							}
							return nil
						})
					}
				})
			}
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func readDirVectors(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(dirVectors)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 2 {
			t.Fatalf("%s: bad line %q", dirVectors, sc.Text())
		}
		out[f[0]] = f[1]
	}
	return out
}

// mkcomposefs runs the C tool on dir (names) or on dir's dumpfile with
// hardlinks made from the inode numbers (hardlinks) and returns the
// image's sha256.
func mkcomposefs(t *testing.T, tool, dir string, v int, hardlinks bool) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	args := []string{fmt.Sprintf("--min-version=%d", v), fmt.Sprintf("--max-version=%d", v)}
	if hardlinks {
		dump := filepath.Join(t.TempDir(), "dump")
		if err := os.WriteFile(dump, []byte(linkedDump(t, dir)), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--from-file", dump, img)
	} else {
		args = append(args, dir, img)
	}
	if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(data)
}

// linkedDump is the dumpfile of dir with every name of an inode after
// the first (in dumpfile order) turned into a hardlink line, and the
// first given the link count. The grouping comes from lstat, not from
// FromDir, so the C tool is an independent judge of the layout.
func linkedDump(t *testing.T, dir string) string {
	t.Helper()
	root, err := erofs.FromDir(dir, erofs.DirOptions{Algorithm: fsverity.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dumpfile.Write(&buf, root); err != nil {
		t.Fatal(err)
	}
	type ino struct{ dev, ino uint64 }
	lines := strings.SplitAfter(buf.String(), "\n")
	first := map[ino]int{}    // line of the first name
	count := map[ino]int{}    // names
	group := map[int]ino{}    // line -> inode, for names of linked inodes
	paths := map[int]string{} // line -> escaped path
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || strings.HasPrefix(f[2], "4") { // directories: mode 40xxx
			continue
		}
		var st unix.Stat_t
		p, err := unescapeDumpPath(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Nlink < 2 {
			continue
		}
		k := ino{uint64(st.Dev), st.Ino}
		if _, ok := first[k]; !ok {
			first[k] = i
		}
		count[k]++
		group[i], paths[i] = k, f[0]
	}
	for i, k := range group {
		f := strings.Fields(lines[i])
		if first[k] == i {
			f[3] = fmt.Sprint(count[k])
		} else {
			f[2] = "@" + f[2]
			f[3] = fmt.Sprint(count[k])
			f[8] = paths[first[k]]
		}
		lines[i] = strings.Join(f, " ") + "\n"
	}
	return strings.Join(lines, "")
}

// unescapeDumpPath checks that a dumpfile path needs no unescaping:
// genDir's names are plain.
func unescapeDumpPath(s string) (string, error) {
	if strings.ContainsRune(s, '\\') {
		return "", fmt.Errorf("unexpected escape in %q", s)
	}
	return s, nil
}

// genDir makes a reproducible tree under dir (which must not exist) from
// seed: directories, regular files of every size class (empty, inline,
// external), symlinks, fifos, devices, sockets and a whiteout, with owners,
// setuid bits, nanosecond mtimes and user and trusted xattrs, and about a
// third of the non-directories given extra names (hardlinks) in the same or
// other directories, before and after the first name in dumpfile order.
// It needs root (mknod, chown, trusted.*).
func genDir(t *testing.T, dir string, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dirs := []string{"", "a", "a/b", "a/b/c", "etc", "m", "usr", "usr/bin", "usr/lib", "z"}
	for _, d := range dirs {
		must(os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	type inode struct {
		names []string
		kind  int
	}
	const (
		regular = iota
		symlink
		fifo
		chardev
		blockdev
		socket
		whiteout
	)
	sizes := []int{0, 1, 5, 63, 64, 65, 100, 4095, 4096, 4097, 70000}
	perms := []uint32{0o644, 0o755, 0o600, 0o4755, 0o2755, 0o444}
	ids := []int{0, 1, 1000, 65534, 100000}
	var inodes []*inode
	used := map[string]bool{}
	newName := func() string {
		for {
			d := dirs[rng.Intn(len(dirs))]
			n := filepath.Join(d, fmt.Sprintf("%c%02d", "abmxz"[rng.Intn(5)], rng.Intn(100)))
			if !used[n] {
				used[n] = true
				return n
			}
		}
	}
	for i := 0; i < 80; i++ {
		in := &inode{kind: regular, names: []string{newName()}}
		switch r := rng.Intn(20); {
		case r < 12:
		case r < 14:
			in.kind = symlink
		case r < 15:
			in.kind = fifo
		case r < 16:
			in.kind = chardev
		case r < 17:
			in.kind = blockdev
		case r < 18:
			in.kind = socket
		case r < 19 && i%4 == 0:
			in.kind = whiteout
		}
		p := filepath.Join(dir, in.names[0])
		var perm uint32 = 0o644
		switch in.kind {
		case regular:
			data := make([]byte, sizes[rng.Intn(len(sizes))])
			rng.Read(data)
			must(os.WriteFile(p, data, 0o600))
			perm = perms[rng.Intn(len(perms))]
		case symlink:
			must(os.Symlink(strings.Repeat("../", rng.Intn(3))+fmt.Sprintf("target-%d", rng.Intn(1000)), p))
		case fifo:
			must(unix.Mkfifo(p, 0o600))
		case chardev:
			must(unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
			perm = 0o666
		case blockdev:
			must(unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(8, uint32(rng.Intn(16))))))
			perm = 0o660
		case socket:
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			must(err)
			must(unix.Bind(fd, &unix.SockaddrUnix{Name: p}))
			unix.Close(fd)
			perm = 0o755
		case whiteout:
			must(unix.Mknod(p, unix.S_IFCHR|0o600, 0))
			perm = 0o000
		}
		must(unix.Lchown(p, ids[rng.Intn(len(ids))], ids[rng.Intn(len(ids))]))
		if in.kind != symlink {
			must(unix.Chmod(p, perm)) // after chown, which clears setuid
		}
		if rng.Intn(3) == 0 {
			must(unix.Lsetxattr(p, "trusted.cfs", []byte(fmt.Sprint("t", rng.Intn(3))), 0))
		}
		if in.kind == regular && rng.Intn(3) == 0 {
			must(unix.Lsetxattr(p, "user.cfs", []byte(strings.Repeat("u", rng.Intn(40))), 0))
		}
		if rng.Intn(3) == 0 {
			for n := 1 + rng.Intn(3); n > 0; n-- {
				l := newName()
				must(os.Link(p, filepath.Join(dir, l)))
				in.names = append(in.names, l)
			}
		}
		inodes = append(inodes, in)
	}
	for _, d := range dirs[1:] {
		if rng.Intn(2) == 0 {
			must(unix.Lsetxattr(filepath.Join(dir, d), "user.dir", []byte(d), 0))
		}
	}
	mtime := func() []unix.Timespec {
		ts := unix.Timespec{Sec: 1700000000 + int64(rng.Intn(4)), Nsec: []int64{0, 0, 123456789, 999999999}[rng.Intn(4)]}
		return []unix.Timespec{ts, ts}
	}
	for _, in := range inodes {
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, in.names[0]), mtime(), unix.AT_SYMLINK_NOFOLLOW))
	}
	// Directories last, deepest first: every entry made changes its
	// parent's mtime.
	sorted := append([]string(nil), dirs...)
	sort.Slice(sorted, func(i, j int) bool { return strings.Count(sorted[i], "/") > strings.Count(sorted[j], "/") })
	for _, d := range sorted {
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, d), mtime(), 0))
	}
	// Anything the filesystem or a security module added by itself would
	// change the image: the vectors assume the tree has only what we set.
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		must(err)
		sz, err := unix.Llistxattr(p, nil)
		if err != nil || sz == 0 {
			return nil
		}
		buf := make([]byte, sz)
		sz, _ = unix.Llistxattr(p, buf)
		for _, x := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
			if x != "trusted.cfs" && x != "user.cfs" && x != "user.dir" {
				t.Fatalf("%s has xattr %s, which the generator did not set (a security module?)", p, x)
			}
		}
		return nil
	})
}
