package bootimage

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/selabel"
)

const fileContexts = `/.*	system_u:object_r:default_t:s0
/boot(/.*)?	system_u:object_r:boot_t:s0
/usr(/.*)?	system_u:object_r:usr_t:s0
/usr/bin(/.*)?	system_u:object_r:bin_t:s0
/usr/bin/ping	--	system_u:object_r:ping_exec_t:s0
/proc/.*	<<none>>
`

func labelOf(t *testing.T, root *fstree.Dir, p string) string {
	t.Helper()
	in, err := root.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	var x map[string][]byte
	switch in := in.(type) {
	case *fstree.Dir:
		x = in.Xattrs
	case *fstree.Leaf:
		x = in.Xattrs
	}
	v, ok := x[selabel.Xattr]
	if !ok {
		return "<none>"
	}
	return string(v)
}

func bootableTree(withPolicy bool) *treeBuilder {
	b := newTree()
	b.dir("/boot", 5).MtimeNsec = 123
	b.file("/boot/EFI/Linux/os.efi", []byte("a UKI would be here"))
	b.dir("/sysroot", 6)
	b.dir("/sysroot/ostree", 6)
	b.file("/usr/lib/modules/"+kver+"/vmlinuz", []byte("kernel"))
	ping := b.file("/usr/bin/ping", []byte("ping"))
	ping.Xattrs = map[string][]byte{"security.capability": []byte("cap")}
	dir, _, _ := b.root.Split("/usr/bin/ping")
	// Two more names: bin_t by the policy, unlike ping itself.
	dir.Set("ping-link", ping)
	dir.Set("ping-link2", ping)
	b.file("/proc/self", []byte("x"))
	if withPolicy {
		b.file("/etc/selinux/config", []byte("SELINUX=enforcing\nSELINUXTYPE=targeted\n"))
		b.file("/etc/selinux/targeted/contexts/files/file_contexts", []byte(fileContexts))
	}
	return b
}

func TestTransformForBoot(t *testing.T) {
	b := bootableTree(true)
	orig := b.root
	copied := orig.Clone()
	tr, err := TransformForBoot(copied, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Policy != "targeted" || tr.Split != 1 {
		t.Errorf("got %+v, want policy targeted and one split (the two links share a label)", tr)
	}
	for _, name := range []string{"boot", "sysroot"} {
		d := copied.Get(name).(*fstree.Dir)
		if d.Len() != 0 || d.Mtime != 1000 {
			t.Errorf("/%s: %d entries, mtime %d; want empty with /usr's mtime 1000", name, d.Len(), d.Mtime)
		}
	}
	if d := copied.Get("boot").(*fstree.Dir); d.MtimeNsec != 123 {
		t.Errorf("/boot keeps its own nanoseconds, as composefs-rs copies only seconds: %d", d.MtimeNsec)
	}
	for p, want := range map[string]string{
		"/":                  "system_u:object_r:default_t:s0",
		"/boot":              "system_u:object_r:boot_t:s0",
		"/usr/bin":           "system_u:object_r:bin_t:s0",
		"/usr/bin/ping":      "system_u:object_r:ping_exec_t:s0",
		"/usr/bin/ping-link": "system_u:object_r:bin_t:s0",
		"/proc/self":         "<none>",
	} {
		if got := labelOf(t, copied, p); got != want {
			t.Errorf("%s: label %q, want %q", p, got, want)
		}
	}
	bin := copied.Get("usr").(*fstree.Dir).Get("bin").(*fstree.Dir)
	ping, link, link2 := bin.Get("ping").(*fstree.Leaf), bin.Get("ping-link").(*fstree.Leaf), bin.Get("ping-link2").(*fstree.Leaf)
	if ping == link || link != link2 {
		t.Errorf("hardlinks: ping and ping-link must be split, ping-link and ping-link2 stay one inode")
	}
	if string(link.Xattrs["security.capability"]) != "cap" {
		t.Errorf("the split copy lost its other xattrs: %v", link.Xattrs)
	}
	// The original is untouched: Clone copied leaves and xattr maps.
	if orig.Get("boot").(*fstree.Dir).Len() == 0 || labelOf(t, orig, "/usr/bin/ping") != "<none>" {
		t.Errorf("the transform changed the tree it was not given")
	}
	origBin := orig.Get("usr").(*fstree.Dir).Get("bin").(*fstree.Dir)
	if origBin.Get("ping") != origBin.Get("ping-link") {
		t.Errorf("the original's hardlink was split")
	}
}

func TestTransformWithoutPolicyStripsLabels(t *testing.T) {
	b := bootableTree(false)
	l := b.file("/usr/bin/labelled", []byte("x"))
	l.Xattrs = map[string][]byte{selabel.Xattr: []byte("system_u:object_r:bin_t:s0"), "user.a": []byte("b")}
	b.root.Xattrs = map[string][]byte{selabel.Xattr: []byte("x")}
	tr, err := TransformForBoot(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Policy != "" || labelOf(t, b.root, "/usr/bin/labelled") != "<none>" || labelOf(t, b.root, "/") != "<none>" {
		t.Errorf("labels kept without a policy: %+v", tr)
	}
	if string(l.Xattrs["user.a"]) != "b" {
		t.Errorf("other xattrs must stay: %v", l.Xattrs)
	}
}

func TestTransformNeedsBootAndSysroot(t *testing.T) {
	for _, missing := range []string{"boot", "sysroot"} {
		b := bootableTree(false)
		b.root.Remove(missing)
		_, err := TransformForBoot(b.root, b.objs.open)
		if !errors.Is(err, ErrNoBootDirs) || !strings.Contains(err.Error(), "/"+missing+" is missing") {
			t.Errorf("without /%s: %v", missing, err)
		}
	}
}

func TestTransformBadPolicy(t *testing.T) {
	b := bootableTree(false)
	b.file("/etc/selinux/config", []byte("SELINUXTYPE=targeted\n"))
	_, err := TransformForBoot(b.root, b.objs.open)
	if err == nil || !strings.Contains(err.Error(), "file_contexts") {
		t.Errorf("a named policy without file_contexts: %v", err)
	}
}

// TestBuildLeavesTreeAlone: Build works on a copy, and gives the same
// bytes for the same tree.
func TestBuildLeavesTreeAlone(t *testing.T) {
	b := bootableTree(true)
	first, tr, err := Build(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Split != 1 || b.root.Get("boot").(*fstree.Dir).Len() == 0 {
		t.Fatalf("transform %+v; /boot of the original has %d entries", tr, b.root.Get("boot").(*fstree.Dir).Len())
	}
	again, _, err := Build(b.root, b.objs.open)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Error("two builds of one tree differ")
	}
}
