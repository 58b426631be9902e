package pull

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/selabel"
)

// dumpRecord is one dumpfile line split into its fields, still escaped.
type dumpRecord struct {
	path   string   // unescaped
	f      []string // PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST
	xattrs []string // NAME=VALUE, escaped
}

func (r *dumpRecord) isLink() bool { return strings.HasPrefix(r.f[2], "@") }

func (r *dumpRecord) mode(t *testing.T) uint32 {
	m, err := strconv.ParseUint(strings.TrimPrefix(r.f[2], "@"), 8, 32)
	if err != nil {
		t.Fatalf("%s: mode %q", r.path, r.f[2])
	}
	return uint32(m)
}

func (r *dumpRecord) line() string {
	return strings.Join(append(append([]string{}, r.f...), r.xattrs...), " ")
}

// unescapeDump undoes the dumpfile escapes the test image's names use.
func unescapeDump(t *testing.T, s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		i++
		switch s[i] {
		case '\\':
			out = append(out, '\\')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			b, err := hex.DecodeString(s[i+1 : i+3])
			if err != nil {
				t.Fatalf("escape in %q", s)
			}
			out = append(out, b...)
			i += 2
		default:
			t.Fatalf("escape \\%c in %q", s[i], s)
		}
	}
	return string(out)
}

// bootDumpOracle turns the dumpfile of an image into the dumpfile of its
// boot image by the rules of composefs-rs's transform_for_boot, on text
// and independently of lib/bootimage and lib/fstree: lines below /boot
// and /sysroot dropped, their mtime seconds taken from /usr, a
// security.selinux on every line from the policy, hardlinks whose names
// got other labels turned into lines of their own, and nlink recounted.
func bootDumpOracle(t *testing.T, dump string, policy *selabel.Policy) string {
	var recs []*dumpRecord
	byPath := map[string]*dumpRecord{}
	for _, l := range strings.Split(strings.TrimSuffix(dump, "\n"), "\n") {
		fields := strings.Split(l, " ")
		if len(fields) < 11 {
			t.Fatalf("dump line %q", l)
		}
		r := &dumpRecord{path: unescapeDump(t, fields[0]), f: fields[:11], xattrs: fields[11:]}
		recs = append(recs, r)
		byPath[r.path] = r
	}
	usrSec, _, _ := strings.Cut(byPath["/usr"].f[7], ".")

	// Effective (aliased) path of each directory, applied as a walk does.
	eff := map[string]string{"/": "/"}
	effOf := func(p string) string {
		dir, name := filepath.Split(p)
		parent := eff[filepath.Clean(dir)]
		e := strings.TrimSuffix(parent, "/") + "/" + name
		if a := policy.Alias(e); a != "" {
			e = a
		}
		return e
	}
	typeOf := map[uint32]byte{erofs.TypeDir: selabel.TypeDir, erofs.TypeRegular: selabel.TypeRegular, erofs.TypeSymlink: selabel.TypeSymlink}
	labelLine := func(r *dumpRecord, label string) {
		var x []string
		for _, kv := range r.xattrs {
			if !strings.HasPrefix(kv, "security.selinux=") {
				x = append(x, kv)
			}
		}
		if label != "" {
			x = append(x, "security.selinux="+label)
		}
		sort.Strings(x)
		r.xattrs = x
	}

	var out []*dumpRecord
	labels := map[string]string{}     // path -> label
	copies := map[string][]string{}   // canonical path -> paths of split copies
	canonLabel := map[string]string{} // canonical path -> its label
	for _, r := range recs {
		if strings.HasPrefix(r.path, "/boot/") || strings.HasPrefix(r.path, "/sysroot/") {
			continue
		}
		if r.path == "/boot" || r.path == "/sysroot" {
			_, nsec, _ := strings.Cut(r.f[7], ".")
			r.f[7] = usrSec + "." + nsec
		}
		p := "/"
		if r.path != "/" {
			p = effOf(r.path)
		}
		typ, ok := typeOf[r.mode(t)&erofs.TypeMask]
		if !ok {
			t.Fatalf("%s: unexpected type %o", r.path, r.mode(t))
		}
		if typ == selabel.TypeDir {
			eff[r.path] = p
		}
		label, _ := policy.Lookup(p, typ)
		labels[r.path] = label
		if !r.isLink() {
			labelLine(r, label)
			canonLabel[r.path] = label
			out = append(out, r)
			continue
		}
		target := unescapeDump(t, r.f[8])
		if canonLabel[target] == label {
			out = append(out, r)
			continue
		}
		linked := false
		for _, c := range copies[target] {
			if labels[c] == label {
				r.f[8] = byPath[c].f[0]
				out = append(out, r)
				linked = true
				break
			}
		}
		if linked {
			continue
		}
		// A copy of the inode: the hardlink line repeats the inode's
		// fields; the payload is the canonical line's.
		r.f[2] = strings.TrimPrefix(r.f[2], "@")
		r.f[8] = byPath[target].f[8]
		r.xattrs = append([]string{}, byPath[target].xattrs...)
		labelLine(r, label)
		copies[target] = append(copies[target], r.path)
		out = append(out, r)
	}

	// nlink: directories 2 + subdirectories, other inodes their names.
	names := map[string]int{}
	subdirs := map[string]int{}
	for _, r := range out {
		if r.isLink() {
			names[unescapeDump(t, r.f[8])]++
		} else {
			names[r.path]++
		}
		if r.path != "/" && r.mode(t)&erofs.TypeMask == erofs.TypeDir {
			subdirs[filepath.Dir(r.path)]++
		}
	}
	var b strings.Builder
	for _, r := range out {
		if !r.isLink() {
			if r.mode(t)&erofs.TypeMask == erofs.TypeDir {
				r.f[3] = strconv.Itoa(2 + subdirs[r.path])
			} else {
				r.f[3] = strconv.Itoa(names[r.path])
			}
		}
		b.WriteString(r.line())
		b.WriteByte('\n')
	}
	return b.String()
}

func dumpOf(t *testing.T, image []byte) string {
	t.Helper()
	img, err := erofs.Read(image)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := dumpfile.Write(&b, img.Root); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestBootImageMatchesDumpfileOracle: the boot image cfs-pull wrote is,
// byte for byte, the EROFS the dumpfile path (parser and writer that
// match mkcomposefs) builds from the boot-transformed dump of the plain
// image; erofs-utils accepts it; and the kernel mounts it with /boot and
// /sysroot empty and the files and labels in place.
func TestBootImageMatchesDumpfileOracle(t *testing.T) {
	repo := newRepo(t)
	img, res := pullImage(t, repo, testimage.Options{Seed: 11, Bootable: true, SELinux: true})
	if res.BootImageID == nil {
		t.Fatalf("no boot image: %s", res.BootNote)
	}
	plain, err := os.ReadFile(repo.ObjectPath(res.ImageID))
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(repo.ObjectPath(res.BootImageID))
	if err != nil {
		t.Fatal(err)
	}

	policy, err := selabel.Parse("file_contexts", strings.NewReader(testimage.SELinuxFileContexts))
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.AddSubs("file_contexts.subs_dist", strings.NewReader(testimage.SELinuxSubsDist)); err != nil {
		t.Fatal(err)
	}
	want := bootDumpOracle(t, dumpOf(t, plain), policy)
	for _, split := range []string{"/usr/sbin/ping-link", "/usr/share/helper-alias"} {
		if !strings.Contains(want, "\n"+split+" ") || strings.Contains(want, "\n"+split+" 0 @") {
			t.Fatalf("the oracle did not split %s from its hardlink group", split)
		}
	}
	node, err := dumpfile.Parse(strings.NewReader(want), "oracle")
	if err != nil {
		t.Fatal(err)
	}
	var oracle bytes.Buffer
	if err := erofs.Write(&oracle, node, erofs.V1); err != nil {
		t.Fatal(err)
	}
	oracleID, err := fsverity.Digest(bytes.NewReader(oracle.Bytes()), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(oracleID, res.BootImageID) {
		got := strings.Split(dumpOf(t, boot), "\n")
		exp := strings.Split(dumpOf(t, oracle.Bytes()), "\n")
		for i := 0; i < len(got) && i < len(exp); i++ {
			if got[i] != exp[i] {
				t.Fatalf("boot image %x, oracle %x; first difference at line %d:\n got  %s\n want %s", res.BootImageID, oracleID, i+1, got[i], exp[i])
			}
		}
		t.Fatalf("boot image %x, oracle %x; dumps of %d and %d lines", res.BootImageID, oracleID, len(got), len(exp))
	}

	fsck := testfs.RequireTool(t, "fsck.erofs")
	imgPath := filepath.Join(t.TempDir(), "boot.cfs")
	if err := os.WriteFile(imgPath, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fsck, imgPath).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs rejects the boot image: %v\n%s", err, out)
	}

	testfs.RequirePrivileged(t)
	mnt := t.TempDir()
	if err := erofs.Mount(repo.ObjectPath(res.BootImageID), mnt, erofs.MountOptions{ObjectsDir: filepath.Join(repo.Path(), "objects")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := erofs.Unmount(mnt); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	for _, d := range []string{"boot", "sysroot"} {
		entries, err := os.ReadDir(filepath.Join(mnt, d))
		if err != nil || len(entries) != 0 {
			t.Errorf("/%s in the mounted boot image: %d entries, %v; want an empty directory", d, len(entries), err)
		}
	}
	tree := img.ExpectedTree()
	kernel, err := os.ReadFile(filepath.Join(mnt, testimage.PathKernel))
	if err != nil {
		t.Fatal(err)
	}
	if e := tree[testimage.PathKernel]; int64(len(kernel)) != e.Size || digestOf(kernel) != e.Digest.String() {
		t.Errorf("%s reads back wrong through the mount", testimage.PathKernel)
	}
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(filepath.Join(mnt, "usr/bin/ping"), "security.selinux", buf)
	if err != nil {
		t.Fatalf("security.selinux of /usr/bin/ping through the mount: %v", err)
	}
	if got := strings.TrimRight(string(buf[:n]), "\x00"); got != "system_u:object_r:ping_exec_t:s0" {
		t.Errorf("/usr/bin/ping is labelled %q through the mount", got)
	}
	var a, b unix.Stat_t
	if err := unix.Lstat(filepath.Join(mnt, "usr/bin/ping"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(mnt, "usr/sbin/ping-link"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino == b.Ino {
		t.Errorf("/usr/bin/ping and /usr/sbin/ping-link share an inode in the boot image though their labels differ")
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
