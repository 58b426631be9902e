package bootimage

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/fstree"
)

// objects is an in-memory object store for trees built in tests.
type objects map[string][]byte

func (o objects) open(id []byte) (io.ReadCloser, error) {
	data, ok := o[string(id)]
	if !ok {
		return nil, fmt.Errorf("object %x: %w", id, os.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// treeBuilder makes fstree trees from paths; files over 64 bytes go to
// the object store, as an image's do.
type treeBuilder struct {
	root *fstree.Dir
	objs objects
}

func newTree() *treeBuilder {
	b := &treeBuilder{root: fstree.NewDir(fstree.Stat{Mode: 0o755}), objs: objects{}}
	b.dir("/usr", 1000)
	return b
}

func (b *treeBuilder) dir(p string, mtime int64) *fstree.Dir {
	parent, name, err := b.root.Split(p)
	if err != nil {
		b.mkdirs(p)
		parent, name, _ = b.root.Split(p)
	}
	if d, ok := parent.Get(name).(*fstree.Dir); ok {
		return d
	}
	d := fstree.NewDir(fstree.Stat{Mode: 0o755, Mtime: mtime, MtimeNsec: 7})
	parent.Set(name, d)
	return d
}

func (b *treeBuilder) mkdirs(p string) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := b.root
	for _, name := range parts[:len(parts)-1] {
		next, ok := cur.Get(name).(*fstree.Dir)
		if !ok {
			next = fstree.NewDir(fstree.Stat{Mode: 0o755})
			cur.Set(name, next)
		}
		cur = next
	}
}

func (b *treeBuilder) file(p string, data []byte) *fstree.Leaf {
	b.mkdirs(p)
	parent, name, _ := b.root.Split(p)
	l := &fstree.Leaf{Stat: fstree.Stat{Mode: 0o644}, Kind: fstree.Regular, Size: int64(len(data))}
	if len(data) <= 64 {
		l.Inline = data
	} else {
		// Any 64-byte name will do; the EROFS writer checks the length.
		id := sha512.Sum512(data)
		b.objs[string(id[:])] = data
		l.Object = id[:]
	}
	parent.Set(name, l)
	return l
}

func (b *treeBuilder) symlink(p, target string) {
	b.mkdirs(p)
	parent, name, _ := b.root.Split(p)
	parent.Set(name, &fstree.Leaf{Stat: fstree.Stat{Mode: 0o777}, Kind: fstree.Symlink, Target: target})
}

const kver = "6.12.0-1.x86_64"

func buildUKI(t *testing.T, cmdline string) []byte {
	t.Helper()
	uki, err := testimage.BuildUKI(t.TempDir(), testimage.UKIFor(testimage.Options{Name: "Test OS", Version: "42"}, cmdline))
	if err != nil {
		t.Fatal(err)
	}
	return uki
}

var (
	sha512ID = strings.Repeat("ab", 64)
	sha256ID = strings.Repeat("cd", 32)
)

func TestDetectNotBootable(t *testing.T) {
	b := newTree()
	b.file("/usr/lib/modules/"+kver+"/modules.dep", []byte("x\n"))
	b.file("/usr/lib/os-release", []byte("ID=plain\n"))
	boot, err := Detect(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if boot.Kind != None || boot.Kind.String() != "none" {
		t.Errorf("kind %v, want none", boot.Kind)
	}
	if boot.OSRelease.ID() != "plain" {
		t.Errorf("os-release ID %q", boot.OSRelease.ID())
	}
}

func TestDetectKernel(t *testing.T) {
	b := newTree()
	b.file("/usr/lib/modules/"+kver+"/vmlinuz", bytes.Repeat([]byte("k"), 100))
	b.file("/usr/lib/modules/"+kver+"/initramfs.img", bytes.Repeat([]byte("i"), 100))
	b.file("/usr/lib/modules/0-no-kernel/modules.dep", []byte("x\n"))
	b.file("/usr/lib/os-release", []byte("NAME=\"Test OS\"\nID=test-os\nVERSION_ID='42.1'\n"))
	boot, err := Detect(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if boot.Kind != BLS || boot.Kind.String() != "bls" || boot.KernelVersion != kver ||
		boot.Vmlinuz != "/usr/lib/modules/"+kver+"/vmlinuz" || boot.Initramfs != "/usr/lib/modules/"+kver+"/initramfs.img" {
		t.Errorf("got %+v", boot)
	}
	if o := boot.OSRelease; o.ID() != "test-os" || o.PrettyName() != "Test OS" || o.Version() != "42.1" || o.BootLabel() != "Test OS 42.1" {
		t.Errorf("os-release %v", o)
	}
}

func TestDetectKernelWithoutInitramfs(t *testing.T) {
	b := newTree()
	b.file("/usr/lib/modules/"+kver+"/vmlinuz", bytes.Repeat([]byte("k"), 100))
	_, err := Detect(b.root, b.objs.open)
	if err == nil || !strings.Contains(err.Error(), "/usr/lib/modules/"+kver+"/vmlinuz has no initramfs.img") {
		t.Fatalf("got %v", err)
	}
}

func TestDetectRefusesLoaderEntries(t *testing.T) {
	b := newTree()
	b.file("/usr/lib/modules/"+kver+"/vmlinuz", bytes.Repeat([]byte("k"), 100))
	b.file("/usr/lib/modules/"+kver+"/initramfs.img", bytes.Repeat([]byte("i"), 100))
	b.file("/boot/loader/entries/README", []byte("not an entry\n"))
	if _, err := Detect(b.root, b.objs.open); err != nil {
		t.Fatalf("a file that is no *.conf is no entry: %v", err)
	}
	b.file("/boot/loader/entries/fedora.conf", []byte("title x\nlinux /vmlinuz\n"))
	_, err := Detect(b.root, b.objs.open)
	if err == nil || !strings.Contains(err.Error(), "/boot/loader/entries/fedora.conf: the image ships a Type 1 boot entry") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v", err)
	}
}

func TestDetectUKIs(t *testing.T) {
	sealed := buildUKI(t, "composefs="+sha512ID+" rw quiet")
	unsealed := buildUKI(t, "rw quiet")
	b := newTree()
	// A kernel too: a UKI wins, as bootc takes the first boot entry.
	b.file("/usr/lib/modules/"+kver+"/vmlinuz", bytes.Repeat([]byte("k"), 100))
	b.file("/usr/lib/modules/"+kver+"/initramfs.img", bytes.Repeat([]byte("i"), 100))
	b.file("/boot/EFI/Linux/os.efi", sealed)
	b.file("/boot/EFI/Linux/os.efi.extra.d/debug.addon.efi", unsealed)
	b.file("/boot/EFI/Linux/notes.txt", []byte("ignored\n"))
	b.file("/usr/lib/modules/"+kver+"/"+kver+".efi", unsealed)
	boot, err := Detect(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if boot.Kind != UKI || boot.Kind.String() != "uki" || len(boot.UKIs) != 2 {
		t.Fatalf("got %+v", boot)
	}
	u0, u1 := boot.UKIs[0], boot.UKIs[1]
	if u0.Path != "/boot/EFI/Linux/os.efi" || u0.KernelVersion != "" || u0.Info.ComposefsID != sha512ID || u0.Info.Insecure {
		t.Errorf("first UKI %+v %+v", u0, u0.Info)
	}
	if u1.Path != "/usr/lib/modules/"+kver+"/"+kver+".efi" || u1.KernelVersion != kver || u1.Info.Sealed() {
		t.Errorf("second UKI %+v %+v", u1, u1.Info)
	}
	if u0.Info.Cmdline != "composefs="+sha512ID+" rw quiet" || u0.Info.Uname != testimage.KernelVersion ||
		u0.Info.OSRel.PrettyName() != "Test OS 42" || u0.Info.OSRel.Version() != "42" {
		t.Errorf("sections %+v", u0.Info)
	}
	if len(boot.Addons) != 1 || boot.Addons[0] != "/boot/EFI/Linux/os.efi.extra.d/debug.addon.efi" {
		t.Errorf("addons %v", boot.Addons)
	}
	if s := boot.Sealed(); len(s) != 1 || s[0].Path != u0.Path {
		t.Errorf("sealed %v", s)
	}
	good := bytes.Repeat([]byte{0xab}, 64)
	if err := boot.CheckSealed(good); err != nil {
		t.Errorf("matching id: %v", err)
	}
	other := bytes.Repeat([]byte{0x01}, 64)
	err = boot.CheckSealed(other)
	var mm *MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), sha512ID) || !strings.Contains(err.Error(), strings.Repeat("01", 64)) || !strings.Contains(err.Error(), "/boot/EFI/Linux/os.efi") {
		t.Errorf("mismatch: %v", err)
	}
}

// TestSealedOutsideBoot: a sealed UKI under /usr/lib/modules can never
// match (it is inside the boot image it names); the error says so.
func TestSealedOutsideBoot(t *testing.T) {
	b := newTree()
	b.file("/usr/lib/modules/"+kver+"/os.efi", buildUKI(t, "composefs="+sha512ID))
	boot, err := Detect(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	err = boot.CheckSealed(bytes.Repeat([]byte{1}, 64))
	if err == nil || !strings.Contains(err.Error(), "a UKI outside /boot is part of the boot image and cannot be sealed for it") {
		t.Errorf("got %v", err)
	}
}

func TestDetectEFISymlinkIsAnError(t *testing.T) {
	b := newTree()
	b.symlink("/boot/EFI/Linux/os.efi", "elsewhere.efi")
	_, err := Detect(b.root, b.objs.open)
	if err == nil || !strings.Contains(err.Error(), "/boot/EFI/Linux/os.efi: a symlink, not a regular file") {
		t.Fatalf("got %v", err)
	}
}

// sectionHeader returns the offset of the named section's header.
func sectionHeader(t *testing.T, pe []byte, name string) int {
	t.Helper()
	lfanew := int(binary.LittleEndian.Uint32(pe[0x3c:]))
	n := int(binary.LittleEndian.Uint16(pe[lfanew+6:]))
	optSize := int(binary.LittleEndian.Uint16(pe[lfanew+20:]))
	for i := 0; i < n; i++ {
		off := lfanew + 24 + optSize + 40*i
		if string(bytes.TrimRight(pe[off:off+8], "\x00")) == name {
			return off
		}
	}
	t.Fatalf("no section %s", name)
	return 0
}

func TestDetectCorruptUKI(t *testing.T) {
	uki := buildUKI(t, "composefs="+sha512ID)
	hdr := sectionHeader(t, uki, ".cmdline")
	cmdlineAt := int(binary.LittleEndian.Uint32(uki[hdr+20:])) // PointerToRawData
	// Cut inside .cmdline, keeping the headers whole.
	cut := append([]byte{}, uki[:cmdlineAt+5]...)
	// .cmdline claiming more bytes than the file holds for it.
	oversized := append([]byte{}, uki...)
	binary.LittleEndian.PutUint32(oversized[hdr+8:], 1<<20)
	// A header announcing more sections than a PE image may have, which
	// debug/pe would go on to decode.
	many := append([]byte{}, uki...)
	lfanew := int(binary.LittleEndian.Uint32(many[0x3c:]))
	binary.LittleEndian.PutUint16(many[lfanew+6:], 5000)
	for name, data := range map[string][]byte{
		"many-sections":  many,
		"text":           bytes.Repeat([]byte("not a PE file "), 10),
		"truncated":      uki[:300],
		"no-pe-sig":      append(append([]byte{}, uki[:0x80]...), bytes.Repeat([]byte{0}, 200)...),
		"cut-in-section": cut,
		"virtual-size":   oversized,
	} {
		t.Run(name, func(t *testing.T) {
			b := newTree()
			b.file("/boot/EFI/Linux/os.efi", data)
			_, err := Detect(b.root, b.objs.open)
			if err == nil || !strings.HasPrefix(err.Error(), "/boot/EFI/Linux/os.efi: ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v", err)
			}
			t.Log(err)
		})
	}
}

func TestParseUKICmdline(t *testing.T) {
	for _, c := range []struct {
		cmdline, id string
		insecure    bool
		err         string
	}{
		{"rw quiet", "", false, ""},
		{"", "", false, ""},
		{"composefs=" + sha512ID, sha512ID, false, ""},
		{"root=UUID=x composefs=?" + sha256ID + " rw", sha256ID, true, ""},
		{"composefs.digest=v1-sha512-12:" + sha512ID, "", false, ""},
		{`x="a composefs=` + sha512ID + `" composefs=` + sha256ID, sha256ID, false, ""},
		{"composefs=" + strings.ToUpper(sha256ID), sha256ID, false, ""},
		{"composefs=abc", "", false, "composefs=abc: not a 64- or 128-digit hex digest"},
		{"composefs=" + strings.Repeat("zz", 32), "", false, "not a hex digest"},
	} {
		uki := buildUKI(t, c.cmdline)
		info, err := ParseUKI(bytes.NewReader(uki))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %v, want %q", c.cmdline, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.cmdline, err)
			continue
		}
		if info.Cmdline != c.cmdline || info.ComposefsID != c.id || info.Insecure != c.insecure || info.Sealed() != (c.id != "") {
			t.Errorf("%q: got %+v", c.cmdline, info)
		}
	}
}

// TestParseUKIWithoutSections: the bare stub has no .cmdline, .osrel or
// .uname; it is an unsealed PE, not an error.
func TestParseUKIWithoutSections(t *testing.T) {
	stub, err := os.ReadFile(testimage.UKIStub)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseUKI(bytes.NewReader(stub))
	if err != nil {
		t.Fatal(err)
	}
	if info.Sealed() || info.Cmdline != "" || info.OSRel != nil || info.Uname != "" {
		t.Errorf("got %+v", info)
	}
}

func TestOSRelease(t *testing.T) {
	o := ParseOSRelease("# comment\nNAME=\"Fedora \\\"Linux\\\"\"\r\nID=fedora\nVERSION_ID=43\nBAD=\"unterminated\nPRETTY_NAME='Fedora Linux 43 (Container Image)'\nVERSION=\"43 (Container Image)\"\n")
	if o.ID() != "fedora" || o["NAME"] != `Fedora "Linux"` || o.PrettyName() != "Fedora Linux 43 (Container Image)" || o.Version() != "43" {
		t.Errorf("got %v", o)
	}
	if _, ok := o["BAD"]; ok {
		t.Errorf("an unterminated quote counts as absent: %v", o)
	}
	if l := ParseOSRelease("ID=x\n").BootLabel(); l != "x" {
		t.Errorf("label %q", l)
	}
	if l := ParseOSRelease("VERSION_ID=1\n").BootLabel(); l != "" {
		t.Errorf("label without a name %q", l)
	}
}

// FuzzParseUKI: any bytes give a UKIInfo or a one-line error, never a
// panic (debug/pe is not hardened; ParseUKI recovers).
func FuzzParseUKI(f *testing.F) {
	stub, err := os.ReadFile(testimage.UKIStub)
	if err != nil {
		f.Skip(err)
	}
	f.Add(stub)
	f.Add(stub[:1024])
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseUKI(bytes.NewReader(data))
		if err != nil {
			if info != nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("info %v with error %q", info, err)
			}
			return
		}
		if _, _, err := CmdlineComposefs(info.Cmdline); err != nil {
			t.Fatal(err)
		}
	})
}

// TestUKIBootDigest: bootc's boot digest of a UKI is the SHA-256 of its
// .linux then its .initrd section, their VirtualSize bytes (not the
// file-alignment padding after them); a UKI without either is refused.
func TestUKIBootDigest(t *testing.T) {
	testfs.RequireFile(t, testimage.UKIStub, "systemd-boot-efi")
	spec := testimage.UKIFor(testimage.Options{Name: "Test OS", Version: "42"}, "rw")
	spec.Linux, spec.Initrd = []byte("kernel bytes, not a multiple of the alignment"), []byte("initramfs\x00\x00")
	uki, err := testimage.BuildUKI(t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseUKIDigest(bytes.NewReader(uki))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append(append([]byte(nil), spec.Linux...), spec.Initrd...))
	if info.BootDigest != hex.EncodeToString(sum[:]) {
		t.Errorf("boot digest %s, want %x", info.BootDigest, sum)
	}
	if info, err := ParseUKI(bytes.NewReader(uki)); err != nil || info.BootDigest != "" {
		t.Errorf("ParseUKI computed a digest: %v %v", info, err)
	}
	spec.Initrd = nil
	uki, err = testimage.BuildUKI(t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseUKIDigest(bytes.NewReader(uki)); err == nil || err.Error() != "no .initrd section" {
		t.Errorf("without .initrd: %v", err)
	}
}
