package testimage

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// KernelVersion is the directory under /usr/lib/modules that holds the
// image's kernel and initramfs, as bootc expects.
const KernelVersion = "6.12.0-100.cfs.x86_64"

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// baseTime is the build time of layer 0; later layers are a day apart so
// that "later layer wins" shows in mtimes too.
var baseTime = time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)

// capNetRawEP is a VFS_CAP_REVISION_2 security.capability value granting
// cap_net_raw (bit 13) permitted+effective, as setcap writes for ping.
const capNetRawEP = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// Paths with a special role, for tests that want to look at one feature.
const (
	PathKernel        = "usr/lib/modules/" + KernelVersion + "/vmlinuz"
	PathInitramfs     = "usr/lib/modules/" + KernelVersion + "/initramfs.img"
	PathOSRelease     = "usr/lib/os-release"
	PathManyEntries   = "usr/share/many"          // a directory with hundreds of entries
	PathImpliedParent = "opt/vendor"              // a directory no tar entry describes
	PathReplaced      = "usr/share/replace/thing" // file, then directory, then file again
	PathCapability    = "usr/bin/ping"            // carries security.capability
)

// manyEntries is the size of PathManyEntries: enough for multi-block
// directories in EROFS (4 KiB blocks) and ext4, and for htree in ext4.
const manyEntries = 600

func layerRNG(seed int64, salt string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(salt))
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}

// buildLayers describes the whole image. Layers 0 and 1 depend only on the
// seed and scale; Name and Version shape only layer 2 and the config, so two
// "releases" of the same seed share their bottom layers like real updates.
func buildLayers(opts Options, mediaTypes []string) *builder {
	b := newBuilder()

	b.startLayer(mediaTypes[0], "cfs testimage: base system", layerRNG(opts.Seed, "base"), baseTime)
	baseLayer(b, opts)
	bulk(b, opts, 0, 60)

	b.startLayer(mediaTypes[1], "cfs testimage: package update", layerRNG(opts.Seed, "update"), baseTime.Add(24*time.Hour))
	updateLayer(b)
	bulk(b, opts, 1, 25)

	b.startLayer(mediaTypes[2], "cfs testimage: configuration "+opts.Version, layerRNG(opts.Seed, "config/"+opts.Name+"/"+opts.Version), baseTime.Add(48*time.Hour))
	configLayer(b, opts)
	bulk(b, opts, 2, 15)

	if opts.UKI != nil {
		b.startLayer(mediaTypes[2], "cfs testimage: unified kernel image", layerRNG(opts.Seed, "uki"), baseTime.Add(72*time.Hour))
		b.file(opts.UKIPath, 0o644, &content{size: int64(len(opts.UKI)), literal: opts.UKI})
	}
	return b
}

func baseLayer(b *builder, opts Options) {
	selinux := func(t string) attr { return xattr("security.selinux", "system_u:object_r:"+t+":s0") }

	b.dir("usr", 0o755, selinux("usr_t"))
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/libexec", "usr/share"} {
		b.dir(d, 0o755)
	}
	// The merged-/usr symlinks every bootc image has.
	b.symlink("bin", "usr/bin")
	b.symlink("sbin", "usr/sbin")
	b.symlink("lib", "usr/lib")
	b.symlink("usr/lib64", "lib")

	b.dir("etc", 0o755, selinux("etc_t"))
	b.dir("var", 0o755)
	b.dir("var/tmp", 0o1777)
	b.dir("var/log", 0o755)
	b.dir("var/cache", 0o755)
	b.dir("var/lib", 0o755)
	b.dir("tmp", 0o1777)
	b.dir("root", 0o700)
	b.text("root/.bashrc", 0o644, "# .bashrc\nalias ll='ls -l'\n")
	// sshd's privilege-separation directory is 0555 and empty; locked has
	// content under a directory its owner cannot write.
	b.dir("usr/share/empty", 0o555)
	b.dir("usr/lib/locked", 0o555)
	b.text("usr/lib/locked/readme", 0o444, "read only\n")

	// The boot payload bootc looks for.
	kdir := "usr/lib/modules/" + KernelVersion
	b.file(PathKernel, 0o755, b.generated(4*MiB+123, kindRandom))
	b.file(PathInitramfs, 0o600, b.generated(3*MiB+4321, kindMixed))
	b.text(kdir+"/modules.dep", 0o644, "kernel/drivers/cfs/cfs.ko.xz:\n")
	b.file(kdir+"/kernel/drivers/cfs/cfs.ko.xz", 0o644, b.generated(23456, kindRandom))
	b.text(PathOSRelease, 0o644, osRelease("cfs base", "0", ""))
	b.symlink("etc/os-release", "../usr/lib/os-release")
	if opts.SELinux {
		selinuxPolicy(b)
	}

	if opts.Bootable {
		bootDirs(b)
	}

	// Sizes around the boundaries filesystems care about: empty (no data
	// block), tiny (inline in EROFS/ext4), exactly one 4 KiB block, one byte
	// over, and a chunk-sized file.
	for _, size := range []int64{0, 1, 2, 7, 31, 63, 64, 4095, 4096, 4097, 8192, 65537} {
		b.file(fmt.Sprintf("usr/share/sizes/size-%d", size), 0o644, b.generated(size, kindMixed))
	}

	b.file("usr/bin/bash", 0o755, b.generated(180*KiB+17, kindMixed), selinux("shell_exec_t"))
	b.file("usr/bin/su", 0o4755, b.generated(57*KiB, kindMixed))
	b.file("usr/bin/write", 0o2755, b.generated(23*KiB, kindMixed), owner(0, 5))
	b.file("usr/bin/sudo", 0o4111, b.generated(31*KiB, kindMixed))
	b.file(PathCapability, 0o755, b.generated(81*KiB, kindMixed), xattr("security.capability", capNetRawEP))
	// A second name for a file with a capability: containers/storage chowns
	// the shared inode for the link, which clears the capability unless the
	// link's own xattrs are applied afterwards.
	b.hardlink("usr/sbin/ping-link", PathCapability)

	// A three-name hardlink group; layer 1 whites out one name.
	b.file("usr/bin/gzip", 0o755, b.generated(90*KiB+1, kindMixed))
	b.hardlink("usr/bin/gunzip", "usr/bin/gzip")
	b.hardlink("usr/bin/zcat", "usr/bin/gzip")
	// Hardlinks across directories, on a setuid file with xattrs.
	b.file("usr/libexec/helper", 0o4750, b.generated(12*KiB, kindMixed), owner(0, 10), xattr("user.origin", "cfs"))
	b.hardlink("usr/share/helper-alias", "usr/libexec/helper")

	// Symlinks: absolute, relative, dangling, with a long and a non-UTF-8 target.
	b.file("usr/share/zoneinfo/UTC", 0o644, literalContent("TZif2\x00\x00\x00UTC\n"))
	b.symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
	b.symlink("etc/mtab", "/proc/self/mounts")
	b.symlink("usr/lib/broken", "../nonexistent/target")

	b.text("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\napp:x:1000:1000::/var/lib/app:/sbin/nologin\nnobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n",
		xattr("security.selinux", "system_u:object_r:passwd_file_t:s0\x00"))
	b.text("etc/group", 0o644, "root:x:0:\ntty:x:5:\nwheel:x:10:\napp:x:1000:\nnobody:x:65534:\n")
	b.text("etc/shadow", 0o000, "root:!locked::0:99999:7:::\n")
	b.text("etc/hostname", 0o644, "cfs-base\n")
	b.file("etc/fstab", 0o644, literalContent(""))
	b.text("etc/foo.conf", 0o644, "foo=1\n", xattr("user.foo", "bar"), xattr("user.binary", "\x00\xff\x01"))
	b.text("etc/obsolete.conf", 0o644, "removed in layer 1\n")
	b.dir("etc/pki/tls", 0o755)
	b.file("etc/pki/tls/cert.pem", 0o444, b.generated(5*KiB+12, kindText))

	// Ownership that is neither root nor the image builder's user.
	b.dir("var/lib/app", 0o750, owner(1000, 1000))
	b.file("var/lib/app/data.db", 0o640, b.generated(9000, kindMixed), owner(1000, 1000))
	b.text("var/lib/nobody-file", 0o600, "nobody\n", owner(65534, 65534))
	b.text("var/lib/subuid-file", 0o644, "mapped\n", owner(100000, 100000))

	// Names that are legal on Linux but not UTF-8.
	if !opts.UTF8Names {
		b.text("usr/share/i18n/caf\xe9.txt", 0o644, "latin-1 name\n")
		b.text("usr/share/i18n/\xff\xfe", 0o644, "byte-order-mark-like name\n")
		b.dir("usr/share/i18n/dir-\xc3\x28", 0o755)
		b.text("usr/share/i18n/dir-\xc3\x28/inner", 0o644, "inside a non-UTF-8 directory\n")
		b.symlink("usr/share/i18n/link-\xff", "caf\xe9.txt")
	}

	// Paths longer than the 100-byte ustar name field, and a 255-byte name.
	deep := "usr/share/deep"
	for i := 1; i <= 40; i++ {
		deep += fmt.Sprintf("/level-%02d", i)
	}
	b.text(deep+"/leaf.txt", 0o644, "deep\n")
	b.symlink("usr/share/deep-link", strings.TrimPrefix(deep, "usr/share/")+"/leaf.txt")
	b.text("usr/share/long/"+strings.Repeat("n", 255), 0o644, "long name\n")

	b.dir(PathManyEntries, 0o755)
	for i := range manyEntries {
		name := fmt.Sprintf("%s/e%04d-%s", PathManyEntries, i, b.randomName("", 24))
		switch i % 10 {
		case 7:
			b.symlink(name, fmt.Sprintf("e%04d", i-1))
		case 8:
			b.file(name, 0o644, b.generated(int64(b.rng.IntN(200)), kindText))
		default:
			b.file(name, 0o644, literalContent(""))
		}
	}

	// Targets of layer 1's whiteouts.
	b.text("usr/share/doc/old.txt", 0o644, "whited out in layer 1\n")
	b.text("usr/share/doc/keep.txt", 0o644, "replaced by a symlink in layer 2\n")
	b.dir("usr/share/oldpkg", 0o755)
	b.text("usr/share/oldpkg/a", 0o644, "a\n")
	b.dir("usr/share/oldpkg/sub", 0o700)
	b.text("usr/share/oldpkg/sub/b", 0o644, "b\n")
	b.dir("usr/share/opaque", 0o755)
	b.text("usr/share/opaque/a.txt", 0o644, "hidden by the opaque whiteout\n")
	b.dir("usr/share/opaque/sub", 0o755)
	b.text("usr/share/opaque/sub/c.txt", 0o644, "hidden too\n")

	b.text(PathReplaced, 0o644, "a file in layer 0\n")

	// Real tars sometimes leave a member's parent out (tar --no-recursion
	// with an explicit file list, some OCI converters). Unpackers must then
	// create the directory themselves; Entry.Implicit marks the result.
	b.dir("opt", 0o755)
	b.impliedDirs[PathImpliedParent] = true
	b.text(PathImpliedParent+"/README", 0o644, "my parent directory has no tar entry\n")
}

// bootDirs adds what a bootc image has under /boot and /sysroot, all of
// which its boot image leaves out.
func bootDirs(b *builder) {
	b.dir("boot", 0o755)
	b.text("boot/grub2/grub.cfg", 0o644, "# written by the image build; a booted host never sees it\n")
	b.dir("sysroot", 0o755)
	b.dir("sysroot/ostree", 0o755)
	b.symlink("ostree", "sysroot/ostree")
}

func updateLayer(b *builder) {
	b.whiteout("usr/share/doc/old.txt")
	b.whiteout("etc/obsolete.conf")
	b.whiteout("usr/share/oldpkg") // a whole directory
	b.whiteout("usr/bin/zcat")     // one name of a hardlink group

	b.opaque("usr/share/opaque")
	b.text("usr/share/opaque/new.txt", 0o644, "the only old-dir survivor is new\n")
	b.dir("usr/share/opaque/sub2", 0o755)
	b.text("usr/share/opaque/sub2/d.txt", 0o644, "whited out again in layer 2\n")

	// A file becomes a directory; the directory entry alone replaces it.
	b.dir(PathReplaced, 0o755)
	b.text(PathReplaced+"/inner.txt", 0o644, "inside the directory that replaced a file\n")

	// Later layers win for content and for metadata.
	b.text("etc/hostname", 0o644, "cfs-updated\n")
	b.file("usr/bin/bash", 0o755, b.generated(185*KiB+3, kindMixed), xattr("security.selinux", "system_u:object_r:shell_exec_t:s0"))
	b.dir("var/cache", 0o700) // same directory, new mode; its content stays

	// A versioned library: hardlinked and symlinked names in one layer.
	b.file("usr/lib/libcfs.so.1.2.3", 0o755, b.generated(70*KiB+5, kindMixed))
	b.hardlink("usr/lib/libcfs.so.1", "usr/lib/libcfs.so.1.2.3")
	b.symlink("usr/lib/libcfs.so", "libcfs.so.1")

	b.file("usr/lib/firmware/cfs/fw.bin", 0o644, b.generated(2*MiB+1, kindMixed))

	b.dir("var/lib/private", 0o700, owner(1000, 1000))
	b.text("var/lib/private/token", 0o600, "secret\n", owner(1000, 1000), xattr("user.foo", "private"))
}

func configLayer(b *builder, opts Options) {
	// The directory from layer 1 becomes a file again: the tar holds only the
	// file, and unpackers must remove the directory with its content.
	b.text(PathReplaced, 0o600, "a file again in layer 2\n")

	b.text(PathOSRelease, 0o644, osRelease(opts.Name, opts.Version, opts.OSID))
	b.text("etc/motd", 0o644, "Welcome to "+opts.Name+" "+opts.Version+"\n")
	b.text("etc/sudoers", 0o440, "root ALL=(ALL) ALL\n")
	b.dir("etc/app", 0o700, owner(1000, 1000))
	b.text("etc/app/config.toml", 0o640, "[app]\nversion = \""+opts.Version+"\"\n", owner(1000, 1000), xattr("user.foo", "config"))

	// A file replaced by a symlink, and a symlink replaced by a file.
	b.symlink("usr/share/doc/keep.txt", "../replace/thing")
	b.text("usr/lib/broken", 0o644, "no longer a dangling symlink\n")

	// Something added by layer 1 and removed again.
	b.whiteout("usr/share/opaque/sub2")

	for _, p := range slices.Sorted(maps.Keys(opts.Files)) {
		b.text(p, 0o644, opts.Files[p])
	}
}

func osRelease(name, version, id string) string {
	if id == "" {
		id = "cfs"
	}
	return fmt.Sprintf("NAME=%q\nID=%s\nVERSION_ID=%s\nPRETTY_NAME=\"%s %s\"\nVARIANT_ID=bootc\n", name, id, version, name, version)
}

// bulkFilesPerScale is how many extra files each Scale step above 1 adds;
// with the size mix below it is about 3.3 MiB per step, so Scale 300 is
// the ~30k-file, ~1 GiB image of Large.
const bulkFilesPerScale = 100

// bulk adds percent% of the scale-dependent files to the current layer,
// with a size mix like /usr on a real distribution: mostly small files, a
// few large ones carrying most of the bytes.
func bulk(b *builder, opts Options, layer, percent int) {
	if opts.Sizes == SizesUsr {
		bulkUsr(b, opts.Scale, layer, percent)
		return
	}
	n := (opts.Scale - 1) * bulkFilesPerScale * percent / 100
	const perDir = 64
	for i := range n {
		var size int64
		switch r := b.rng.IntN(1000); {
		case r < 700:
			size = b.rng.Int64N(4 * KiB)
		case r < 950:
			size = 4*KiB + b.rng.Int64N(28*KiB)
		case r < 995:
			size = 32*KiB + b.rng.Int64N(480*KiB)
		default:
			size = 1*MiB + b.rng.Int64N(5*MiB)
		}
		kind := contentKind(b.rng.IntN(3))
		p := fmt.Sprintf("usr/share/bulk/layer%d/d%04d/f%05d", layer, i/perDir, i)
		b.file(p, 0o644, b.generated(size, kind))
	}
}

// usrSizes is the size distribution of the regular files in a Debian /usr
// (128k files, 5.4 GB): the cumulative share of files, in units of 1/100000,
// at or below each size bound. Two thirds are at most 4 KiB and 86% at most
// 16 KiB, yet the 0.3% above 1 MiB hold more than half of the bytes.
// Within a bucket sizes are log-uniform. The files above 16 MiB of the
// real tree (0.05%, up to 250 MiB) are folded into one bucket up to
// 32 MiB, which keeps the image near 3.7 GB per 100k files.
var usrSizes = []struct {
	upTo       int64
	cumulative int
}{
	{0, 681},
	{64, 1634},
	{512, 14010},
	{1 * KiB, 29695},
	{4 * KiB, 66537},
	{16 * KiB, 86290},
	{64 * KiB, 95951},
	{256 * KiB, 98996},
	{1 * MiB, 99688},
	{4 * MiB, 99885},
	{16 * MiB, 99954},
	{32 * MiB, 100000},
}

func usrSize(rng *rand.Rand) int64 {
	r := rng.IntN(100000)
	lo := int64(0)
	for _, s := range usrSizes {
		if r < s.cumulative {
			if s.upTo == 0 {
				return 0
			}
			// log-uniform in (lo, upTo]
			l, h := math.Log(float64(lo+1)), math.Log(float64(s.upTo))
			return int64(math.Exp(l + rng.Float64()*(h-l)))
		}
		lo = s.upTo
	}
	panic("testimage: usrSizes does not end at 100000")
}

// bulkUsr is bulk for SizesUsr: sizes drawn from usrSizes, and a tree
// shaped like /usr rather than 64-entry directories: packages of one to
// a few dozen directories, each with a handful of files (Debian's /usr
// averages 7.5 files per directory), and one symlink for about every 25
// files.
func bulkUsr(b *builder, scale, layer, percent int) {
	n := (scale - 1) * bulkFilesPerScale * percent / 100
	pkg, dir, left := 0, 0, 0
	dirsLeft := 0
	for i := range n {
		if left == 0 {
			if dirsLeft == 0 {
				pkg++
				dirsLeft = 1 + b.rng.IntN(24)
			}
			dir++
			dirsLeft--
			left = 1 + b.rng.IntN(14)
		}
		left--
		d := fmt.Sprintf("usr/share/bulk/layer%d/pkg%04d/d%05d", layer, pkg, dir)
		name := fmt.Sprintf("f%06d%s", i, usrSuffixes[b.rng.IntN(len(usrSuffixes))])
		b.file(d+"/"+name, 0o644, b.generated(usrSize(b.rng), contentKind(b.rng.IntN(3))))
		if b.rng.IntN(25) == 0 {
			b.symlink(fmt.Sprintf("%s/l%06d", d, i), name)
		}
	}
}

// usrSuffixes vary the name lengths the way real file names do.
var usrSuffixes = []string{"", ".so.1", ".py", ".h", ".gz", ".mo", ".conf", "-data.json", ".desktop", ".cpython-312.pyc"}
