package fstree

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/selabel"
)

func TestRelabel(t *testing.T) {
	p, err := selabel.Parse("fc", strings.NewReader(`
/.*	default_t
/	-d	root_t
/usr(/.*)?	usr_t
/usr/bin(/.*)?	bin_t
/usr/bin/ping	--	ping_exec_t
/usr/share/none	<<none>>
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddSubs("subs", strings.NewReader("/usr/sbin /usr/bin\n")); err != nil {
		t.Fatal(err)
	}
	root := NewDir(Stat{Mode: 0o755})
	usr := NewDir(Stat{Mode: 0o755, Xattrs: map[string][]byte{selabel.Xattr: []byte("container_file_t")}})
	bin, sbin, share := NewDir(Stat{Mode: 0o755}), NewDir(Stat{Mode: 0o755}), NewDir(Stat{Mode: 0o755})
	root.Set("usr", usr)
	usr.Set("bin", bin)
	usr.Set("sbin", sbin)
	usr.Set("share", share)
	capXattr := map[string][]byte{"security.capability": {1, 2}}
	ping := &Leaf{Stat: Stat{Mode: 0o755, Xattrs: capXattr}, Kind: Regular, Size: 3, Inline: []byte("abc")}
	gzip := &Leaf{Stat: Stat{Mode: 0o755}, Kind: Regular}
	bin.Set("ping", ping)
	sbin.Set("ping", ping)       // aliased to /usr/bin/ping: same label, stays linked
	sbin.Set("ping-link", ping)  // /usr/bin/ping-link: bin_t, split off
	share.Set("ping-copy", ping) // usr_t, split off
	share.Set("ping-copy2", ping)
	bin.Set("gzip", gzip)
	bin.Set("gunzip", gzip)
	share.Set("none", &Leaf{Stat: Stat{Mode: 0o644, Xattrs: map[string][]byte{selabel.Xattr: []byte("stale")}}, Kind: Regular})
	share.Set("link", &Leaf{Kind: Symlink, Target: "x"})

	split := Relabel(root, p)
	if split != 2 {
		t.Errorf("split %d hardlinks, want 2", split)
	}
	label := func(path string) string {
		in, err := root.Lookup(path)
		if err != nil {
			t.Fatal(err)
		}
		var st *Stat
		switch in := in.(type) {
		case *Dir:
			st = &in.Stat
		case *Leaf:
			st = &in.Stat
		}
		v, ok := st.Xattrs[selabel.Xattr]
		if !ok {
			return "<none>"
		}
		return string(v)
	}
	for path, want := range map[string]string{
		"/": "root_t", "/usr": "usr_t", "/usr/bin": "bin_t", "/usr/sbin": "bin_t",
		"/usr/bin/ping": "ping_exec_t", "/usr/sbin/ping": "ping_exec_t", "/usr/sbin/ping-link": "bin_t",
		"/usr/share/ping-copy": "usr_t", "/usr/share/ping-copy2": "usr_t", "/usr/bin/gzip": "bin_t",
		"/usr/share/none": "<none>", "/usr/share/link": "usr_t",
	} {
		if got := label(path); got != want {
			t.Errorf("%s: label %q, want %q", path, got, want)
		}
	}
	same := func(a, b string) bool {
		x, _ := root.Lookup(a)
		y, _ := root.Lookup(b)
		return x == y
	}
	if !same("/usr/bin/ping", "/usr/sbin/ping") || !same("/usr/share/ping-copy", "/usr/share/ping-copy2") || !same("/usr/bin/gzip", "/usr/bin/gunzip") {
		t.Error("names with the same label should still share their leaf")
	}
	if same("/usr/bin/ping", "/usr/sbin/ping-link") || same("/usr/bin/ping", "/usr/share/ping-copy") {
		t.Error("names with different labels should not share their leaf")
	}
	copyLeaf, _ := root.Lookup("/usr/share/ping-copy")
	if c := copyLeaf.(*Leaf); string(c.Inline) != "abc" || c.Xattrs["security.capability"] == nil {
		t.Errorf("a split-off copy lost the leaf's content or xattrs: %+v", c)
	}
	if len(capXattr) != 1 {
		t.Error("Relabel changed a map it did not own")
	}
}

func TestOpener(t *testing.T) {
	root := NewDir(Stat{Mode: 0o755})
	etc := NewDir(Stat{Mode: 0o755})
	root.Set("etc", etc)
	etc.Set("inline", &Leaf{Kind: Regular, Inline: []byte("hi")})
	etc.Set("object", &Leaf{Kind: Regular, Object: []byte{0xab}})
	etc.Set("link", &Leaf{Kind: Symlink, Target: "inline"})
	open := Opener(root, func(id []byte) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("object " + string(rune('0'+id[0]%10)))), nil
	})
	read := func(p string) (string, error) {
		f, err := open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	if s, err := read("/etc/inline"); s != "hi" || err != nil {
		t.Errorf("inline: %q %v", s, err)
	}
	if s, err := read("/etc/object"); !strings.HasPrefix(s, "object") || err != nil {
		t.Errorf("object: %q %v", s, err)
	}
	if _, err := read("/etc/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := read("/etc/inline/below"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("below a file: %v, want an error that is not 'does not exist'", err)
	}
	if _, err := read("/etc/link"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("symlink: %v, want 'not a regular file'", err)
	}
}
