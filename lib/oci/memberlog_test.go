package oci

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
)

// layerMember is one member of a generated layer.
type layerMember struct {
	hdr  tar.Header
	body []byte
}

func tarOfHeaders(t testing.TB, format tar.Format, members []layerMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, m := range members {
		h := m.hdr
		h.Size = int64(len(m.body))
		if h.Format == tar.FormatUnknown {
			h.Format = format
		}
		if err := w.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if _, err := w.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerGen makes layers of every kind of member over a model of the
// merged tree, so that most layers merge (hardlinks name files that
// exist, whiteouts names that do) and some do not.
type layerGen struct {
	rng     *rand.Rand
	present map[string]byte // merged so far: path → tar type
	bodies  [][]byte        // earlier bodies, for objects shared between members
}

var genNames = []string{"usr", "lib", "bin", "x", "a b", ".hidden", "é", "日本語", "naïve-ñ", "\u00ff\u00fe",
	strings.Repeat("long", 30), strings.Repeat("ü", 100), "z.so.1"}

func (g *layerGen) name() string {
	n := genNames[g.rng.Intn(len(genNames))]
	if g.rng.Intn(3) == 0 {
		n += fmt.Sprint(g.rng.Intn(1000))
	}
	return n
}

// pick returns a present path of one of the types, or "".
func (g *layerGen) pick(types string) string {
	var c []string
	for p, typ := range g.present {
		if strings.IndexByte(types, typ) >= 0 {
			c = append(c, p)
		}
	}
	if len(c) == 0 {
		return ""
	}
	sort.Strings(c)
	return c[g.rng.Intn(len(c))]
}

func (g *layerGen) stat(h *tar.Header) {
	h.Mode = []int64{0o644, 0o755, 0o4755, 0o1777, 0o600, 0o7777}[g.rng.Intn(6)]
	h.Uid = []int{0, 0, 1000, 65534, 4000000000}[g.rng.Intn(5)]
	h.Gid = []int{0, 0, 100, 4294967295}[g.rng.Intn(4)]
	h.ModTime = time.Unix(1700000000+g.rng.Int63n(1000), 0)
	if g.rng.Intn(4) == 0 {
		h.ModTime = time.Unix(g.rng.Int63n(1<<33)-1<<32, g.rng.Int63n(1e9))
		h.Format = tar.FormatPAX // the only one with sub-second times
	}
	if g.rng.Intn(5) == 0 {
		h.PAXRecords = map[string]string{}
		h.Format = tar.FormatPAX
		for _, x := range []string{"user.a", "security.selinux", "security.capability", "trusted.é"}[:1+g.rng.Intn(4)] {
			v := fmt.Sprint("v", g.rng.Intn(3))
			if x == "security.capability" {
				v = capNetRaw
			}
			h.PAXRecords["SCHILY.xattr."+x] = v
		}
	}
}

func (g *layerGen) body() []byte {
	if len(g.bodies) > 0 && g.rng.Intn(5) == 0 {
		return g.bodies[g.rng.Intn(len(g.bodies))]
	}
	b := make([]byte, []int{0, 1, 63, 64, 65, 511, 512, 4097, 70000}[g.rng.Intn(9)])
	g.rng.Read(b)
	g.bodies = append(g.bodies, b)
	return b
}

// layer makes one layer of about n members, the first of them /usr if
// usr is set.
func (g *layerGen) layer(n int, usr bool) []layerMember {
	var out []layerMember
	used := map[string]bool{}
	add := func(p string, h tar.Header, body []byte) bool {
		if used[p] {
			return false
		}
		used[p] = true
		h.Name = strings.TrimPrefix(p, "/")
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if p == "" {
			h.Name = "./"
		}
		out = append(out, layerMember{h, body})
		return true
	}
	if usr {
		add("/usr", tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)}, nil)
		g.present["/usr"] = tar.TypeDir
	}
	for len(out) < n {
		dir := g.pick(string(tar.TypeDir))
		if g.rng.Intn(8) == 0 {
			dir += "/" + g.name() // an implied parent
			if _, ok := g.present[dir]; ok {
				continue
			}
			g.present[dir] = tar.TypeDir
		}
		p := dir + "/" + g.name()
		if typ, ok := g.present[p]; ok && (typ == tar.TypeDir || g.rng.Intn(3) > 0) {
			// Mostly new names; sometimes a leaf replaced.
			continue
		}
		var h tar.Header
		g.stat(&h)
		switch r := g.rng.Intn(20); {
		case r < 4:
			h.Typeflag = tar.TypeDir
			if _, ok := g.present[p]; ok {
				continue
			}
			if old := g.pick(string(tar.TypeDir)); old != "" && g.rng.Intn(3) == 0 {
				p = old // over a directory: metadata only
			}
			if add(p, h, nil) {
				g.present[p] = tar.TypeDir
			}
		case r < 10:
			h.Typeflag = tar.TypeReg
			if add(p, h, g.body()) {
				g.present[p] = tar.TypeReg
			}
		case r < 11:
			h.Typeflag, h.Linkname = tar.TypeSymlink, []string{"../lib/x", "/usr/bin/é", strings.Repeat("t/", 90)}[g.rng.Intn(3)]
			if add(p, h, nil) {
				g.present[p] = tar.TypeSymlink
			}
		case r < 13:
			target := g.pick(string([]byte{tar.TypeReg, tar.TypeSymlink, tar.TypeFifo}))
			if target == "" {
				continue
			}
			h.Typeflag, h.Linkname = tar.TypeLink, strings.TrimPrefix(target, "/")
			if g.rng.Intn(4) == 0 {
				h.Linkname = target // spelt absolute
			}
			if add(p, h, nil) {
				g.present[p] = tar.TypeReg
			}
		case r < 14:
			h.Typeflag = []byte{tar.TypeChar, tar.TypeBlock, tar.TypeFifo}[g.rng.Intn(3)]
			h.Devmajor, h.Devminor = g.rng.Int63n(5000), g.rng.Int63n(1<<20)
			if add(p, h, nil) {
				g.present[p] = tar.TypeFifo
			}
		case r < 16:
			victim := g.pick(string([]byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeFifo}))
			if victim == "" || victim == "/usr" || used[victim] {
				continue
			}
			i := strings.LastIndexByte(victim, '/')
			if add(victim[:i]+"/.wh."+victim[i+1:], h, nil) {
				g.remove(victim)
			}
		case r < 17:
			d := g.pick(string(tar.TypeDir))
			if d == "" || d == "/usr" {
				continue
			}
			if add(d+"/.wh..wh..opq", h, nil) {
				for q := range g.present {
					if strings.HasPrefix(q, d+"/") {
						delete(g.present, q)
					}
				}
			}
		case r < 18:
			h.Typeflag = tar.TypeDir
			add("", h, nil) // the root entry
		default:
			// A deep file whose parents the layer does not list.
			h.Typeflag = tar.TypeReg
			q := fmt.Sprint(dir, "/deep", g.rng.Intn(1000), "/", g.name(), "/", g.name())
			add(q, h, g.body())
		}
	}
	return out
}

func (g *layerGen) remove(p string) {
	delete(g.present, p)
	for q := range g.present {
		if strings.HasPrefix(q, p+"/") {
			delete(g.present, q)
		}
	}
}

// dumpTree prints every field of every inode, hardlinks by first path,
// nil and empty slices apart.
func dumpTree(root *fstree.Dir) string {
	var b strings.Builder
	stat := func(st *fstree.Stat) {
		fmt.Fprintf(&b, " %o %d:%d %d.%d", st.Mode, st.UID, st.GID, st.Mtime, st.MtimeNsec)
		if st.Xattrs != nil {
			keys := make([]string, 0, len(st.Xattrs))
			for k := range st.Xattrs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.WriteString(" x{")
			for _, k := range keys {
				fmt.Fprintf(&b, "%q=%q ", k, st.Xattrs[k])
			}
			b.WriteString("}")
		}
	}
	b.WriteString("/")
	stat(&root.Stat)
	b.WriteString("\n")
	root.Walk(func(p string, in fstree.Inode, first string) error {
		fmt.Fprintf(&b, "%q", p)
		switch in := in.(type) {
		case *fstree.Dir:
			b.WriteString(" dir")
			stat(&in.Stat)
		case *fstree.Leaf:
			if first != "" {
				fmt.Fprintf(&b, " = %q", first)
				break
			}
			fmt.Fprintf(&b, " %v", in.Kind)
			stat(&in.Stat)
			fmt.Fprintf(&b, " size %d inline %v %q object %x target %q rdev %d", in.Size, in.Inline == nil, in.Inline, in.Object, in.Target, in.Rdev)
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// importLogged stores each layer with a log and returns the diff IDs and
// logs. Every other layer has its bodies stored by an object writer of
// the caller's, in tar order (as a containers-storage import does), the
// others by the body workers.
func importLogged(t *testing.T, repo *composefs.Repository, format tar.Format, layers [][]layerMember) ([]string, []*MemberLog) {
	t.Helper()
	var ids []string
	var logs []*MemberLog
	inOrder := func(m *Member, body io.Reader) ([]byte, int64, bool, error) {
		return repo.WriteObjectWith(body, composefs.WriteOptions{})
	}
	for i, l := range layers {
		data := tarOfHeaders(t, format, l)
		d := digestOf(data)
		log := new(MemberLog)
		var objects ObjectWriter
		if i%2 == 1 {
			objects = inOrder
		}
		if _, err := ImportLayerLogged(repo, bytes.NewReader(data), d, objects, log); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d)
		logs = append(logs, log)
	}
	return ids, logs
}

// checkSameTree builds the tree both ways, with every log and with only
// some, and wants the same tree, implied directories and error.
func checkSameTree(t *testing.T, repo *composefs.Repository, ids []string, logs []*MemberLog) (string, error) {
	t.Helper()
	// Member by member first: the log replays what the stored stream
	// gives, field for field.
	for i, d := range ids {
		var want, got []Member
		if err := ReadLayer(repo, d, func(m *Member) error { want = append(want, *m); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := logs[i].Replay(func(m *Member) error { got = append(got, *m); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("layer %d: %d members replayed, %d stored", i, len(got), len(want))
		}
		for j := range want {
			if !reflect.DeepEqual(got[j], want[j]) {
				t.Fatalf("layer %d member %d:\n got %+v\nwant %+v", i, j, got[j], want[j])
			}
		}
	}
	wantTree, wantMg, wantErr := BuildCheckedTree(repo, ids)
	// And the merge itself against the plainest one: every parent found
	// from the root, every inode's xattrs filtered by a walk.
	plain := NewMerger()
	var plainErr error
	for _, d := range ids {
		if plainErr = ReadLayer(repo, d, func(m *Member) error {
			plain.lastDir = nil
			return plain.Apply(m)
		}); plainErr != nil {
			plainErr = fmt.Errorf("layer %s: %w", d, plainErr)
			break
		}
	}
	if plainErr == nil {
		plainErr = TransformForOCI(plain.Root, AllowlistOnly)
	}
	if fmt.Sprint(plainErr) != fmt.Sprint(wantErr) {
		t.Fatalf("error %v, merging plainly %v", wantErr, plainErr)
	}
	if wantErr == nil && (dumpTree(plain.Root) != dumpTree(wantTree) || plain.ImpliedDirs != wantMg.ImpliedDirs) {
		t.Fatalf("tree:\n%s\nmerged plainly:\n%s", dumpTree(wantTree), dumpTree(plain.Root))
	}
	some := make([]*MemberLog, len(logs))
	for i := range logs {
		if i%2 == 1 {
			some[i] = logs[i]
		}
	}
	for _, use := range [][]*MemberLog{logs, some} {
		tree, mg, err := BuildCheckedTreeFrom(repo, ids, use)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("error %v, from the streams %v", err, wantErr)
		}
		if err != nil {
			continue
		}
		if got, want := dumpTree(tree), dumpTree(wantTree); got != want {
			t.Fatalf("tree from logs:\n%s\nfrom the streams:\n%s", got, want)
		}
		if mg.ImpliedDirs != wantMg.ImpliedDirs {
			t.Fatalf("%d implied directories, from the streams %d", mg.ImpliedDirs, wantMg.ImpliedDirs)
		}
	}
	if wantErr != nil {
		return "", wantErr
	}
	return dumpTree(wantTree), nil
}

// TestMemberLogBuildsTheSameTree: the tree of logged layers is the tree
// of their stored streams, on random layers of every kind of member
// (whiteouts, opaque directories, hardlinks within and across layers,
// xattrs, devices, symlinks, inline and object bodies, long and
// non-ASCII names, implied parents, the root entry) in the three tar
// formats.
func TestMemberLogBuildsTheSameTree(t *testing.T) {
	merged, failed := 0, 0
	for seed := int64(0); seed < 24; seed++ {
		g := &layerGen{rng: rand.New(rand.NewSource(seed)), present: map[string]byte{}}
		layers := [][]layerMember{g.layer(40, true)}
		for i := 0; i < 1+int(seed%3); i++ {
			layers = append(layers, g.layer(25, false))
		}
		if seed%4 == 3 {
			// A last layer that goes through a leaf of the tree.
			l := g.layer(10, false)
			if leaf := g.pick(string([]byte{tar.TypeReg, tar.TypeSymlink, tar.TypeFifo})); leaf != "" {
				l = append(l, layerMember{hdr: tar.Header{Name: leaf[1:] + "/under", Typeflag: tar.TypeReg, Mode: 0o644}})
			}
			layers = append(layers, l)
		}
		format := []tar.Format{tar.FormatUnknown, tar.FormatPAX, tar.FormatGNU}[seed%3]
		repo := newRepo(t)
		ids, logs := importLogged(t, repo, format, layers)
		if _, err := checkSameTree(t, repo, ids, logs); err != nil {
			failed++
		} else {
			merged++
		}
	}
	// Both outcomes must have been compared.
	if merged < 12 || failed < 3 {
		t.Fatalf("%d layer sets merged, %d failed", merged, failed)
	}
}

// TestMemberLogSameErrors: layers the merge refuses are refused with the
// same words from their logs; and the directory the merge remembers as
// the last parent is still right after a later member took it, or one
// above it, out of the tree.
func TestMemberLogSameErrors(t *testing.T) {
	usr := tm{name: "usr/", typ: tar.TypeDir}
	cases := map[string]struct {
		layers [][]tm
		want   string
	}{
		"through symlink":      {[][]tm{{usr, {name: "lib", link: "usr/lib", typ: tar.TypeSymlink}, {name: "lib/x", body: "x"}}}, "may not go through a symlink"},
		"hardlink missing":     {[][]tm{{usr, {name: "a", link: "nothere", typ: tar.TypeLink}}}, "no such file"},
		"hardlink whited out":  {[][]tm{{usr, {name: "b", body: "b"}}, {{name: ".wh.b"}, {name: "a", link: "b", typ: tar.TypeLink}}}, "no such file"},
		"hardlink to dir":      {[][]tm{{usr, {name: "d/", typ: tar.TypeDir}, {name: "a", link: "d", typ: tar.TypeLink}}}, "is a directory"},
		"hardlink under file":  {[][]tm{{usr, {name: "f", body: "f"}, {name: "a", link: "f/x", typ: tar.TypeLink}}}, "not a directory"},
		"no usr":               {[][]tm{{{name: "etc/", typ: tar.TypeDir}}}, "no /usr"},
		"usr whited out":       {[][]tm{{usr}, {{name: ".wh.usr"}}}, "no /usr"},
		"root made opaque":     {[][]tm{{usr}, {{name: ".wh..wh..opq"}}}, "no /usr"},
		"whiteout, then again": {[][]tm{{usr, {name: "usr/a", body: "a"}}, {{name: "usr/.wh.a"}, {name: "usr/a/", typ: tar.TypeDir}}}, ""},
		"parent now a file":    {[][]tm{{usr, {name: "a/", typ: tar.TypeDir}, {name: "a/x", body: "x"}}, {{name: "a", body: "f"}, {name: "a/y", body: "y"}}}, "parent /a is a file"},
		"ancestor now a link":  {[][]tm{{usr, {name: "a/b/", typ: tar.TypeDir}, {name: "a/b/x", body: "x"}}, {{name: "a", link: "usr", typ: tar.TypeSymlink}, {name: "a/b/y", body: "y"}}}, "parent /a is a symlink"},
		"parent now hardlink":  {[][]tm{{usr, {name: "f", body: "f"}, {name: "a/", typ: tar.TypeDir}, {name: "a/x", body: "x"}}, {{name: "a", link: "f", typ: tar.TypeLink}, {name: "a/y", body: "y"}}}, "parent /a is a file"},
		"parent whited out":    {[][]tm{{usr, {name: "a/", typ: tar.TypeDir}, {name: "a/x", body: "x"}}, {{name: ".wh.a"}, {name: "a/y", body: "y"}}}, ""},
		"ancestor made opaque": {[][]tm{{usr, {name: "a/b/", typ: tar.TypeDir}, {name: "a/b/x", body: "x"}}, {{name: "a/.wh..wh..opq"}, {name: "a/b/y", body: "y"}}}, ""},
		"sibling replaced":     {[][]tm{{usr, {name: "a/", typ: tar.TypeDir}, {name: "ab/", typ: tar.TypeDir}, {name: "ab/x", body: "x"}}, {{name: "a", body: "f"}, {name: "ab/y", body: "y"}}}, ""},
		"xattrs dir over dir": {[][]tm{
			{{name: "usr/", typ: tar.TypeDir, xattrs: map[string]string{"user.a": "1"}}, {name: "usr/d/", typ: tar.TypeDir}, {name: "usr/f", body: "f", xattrs: map[string]string{"security.selinux": "s", "security.capability": capNetRaw}}},
			{{name: "usr/", typ: tar.TypeDir, xattrs: map[string]string{"security.selinux": "u", "security.capability": capNetRaw}}, {name: "usr/d/", typ: tar.TypeDir, xattrs: map[string]string{"security.selinux": "u"}}, {name: "usr/g", link: "usr/f", typ: tar.TypeLink, xattrs: map[string]string{"user.b": "2"}}},
		}, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			repo := newRepo(t)
			var ids []string
			var logs []*MemberLog
			for _, l := range c.layers {
				data := tarOf(t, l...)
				log := new(MemberLog)
				if _, err := ImportLayerLogged(repo, bytes.NewReader(data), digestOf(data), nil, log); err != nil {
					t.Fatal(err)
				}
				ids, logs = append(ids, digestOf(data)), append(logs, log)
			}
			_, err := checkSameTree(t, repo, ids, logs)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// TestMemberLogIncomplete: a log whose import failed is not used; the
// layer, stored by another import, is read from its stream.
func TestMemberLogIncomplete(t *testing.T) {
	repo := newRepo(t)
	data := tarOf(t, tm{name: "usr/", typ: tar.TypeDir}, tm{name: "usr/f", body: strings.Repeat("f", 100)}, tm{name: "usr/g", body: "g"})
	d := digestOf(data)
	bad := new(MemberLog)
	if _, err := ImportLayerLogged(repo, bytes.NewReader(data[:len(data)-1024]), d, nil, bad); err == nil {
		t.Fatal("a truncated layer was imported")
	}
	if _, err := ImportLayerLogged(repo, bytes.NewReader(data), digestOf(data[:len(data)-1]), nil, bad); err == nil {
		t.Fatal("a layer with the wrong diff ID was imported")
	}
	if _, err := ImportLayer(repo, bytes.NewReader(data), d, nil); err != nil {
		t.Fatal(err)
	}
	if bad.usable() {
		t.Fatal("the log of a failed import is usable")
	}
	tree, _, err := BuildCheckedTreeFrom(repo, []string{d}, []*MemberLog{bad})
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := BuildCheckedTree(repo, []string{d})
	if dumpTree(tree) != dumpTree(want) {
		t.Fatalf("tree %s, want %s", dumpTree(tree), dumpTree(want))
	}
}

// FuzzMemberLog: members made from the fuzzer's bytes replay as they
// were added, and a log's records cut or altered fail or replay, never
// panic.
func FuzzMemberLog(f *testing.F) {
	f.Add([]byte("usr/bin/x\x00\x01\x02"), uint64(7), int64(1700000000), uint8(1))
	f.Add([]byte("a/é/日本語/long-name-that-goes-on\x00\xff"), uint64(1<<40), int64(-5), uint8(4))
	f.Fuzz(func(t *testing.T, seed []byte, n uint64, mtime int64, cut uint8) {
		rng := rand.New(rand.NewSource(int64(n)))
		var log MemberLog
		var want []Member
		for i := 0; i < 1+int(n%17); i++ {
			p := "/" + string(seed[:rng.Intn(len(seed)+1)])
			m := Member{Path: p, Kind: fstree.Kind(rng.Intn(6)), Stat: fstree.Stat{
				Mode: rng.Uint32() & 0o7777, UID: rng.Uint32(), GID: rng.Uint32(), Mtime: mtime + rng.Int63n(3) - 1,
			}}
			if rng.Intn(3) == 0 {
				m.Stat.MtimeNsec = uint32(rng.Intn(1e9))
			}
			if rng.Intn(3) == 0 {
				m.Stat.Xattrs = map[string][]byte{string(seed): append([]byte{}, seed...)}
				if rng.Intn(2) == 0 {
					m.Stat.Xattrs["user.x"] = []byte{}
				}
			}
			switch {
			case m.Kind == 0 && rng.Intn(2) == 0:
				m.Dir = true
			case m.Kind == 0:
				m.Hardlink = "/" + string(seed)
			case m.Kind == fstree.Regular:
				m.Size = rng.Int63n(InlineMax * 2)
				if m.Size <= InlineMax {
					m.Inline = make([]byte, m.Size)
					rng.Read(m.Inline)
				} else {
					m.Object = make([]byte, 64)
					rng.Read(m.Object)
					log.addObject(m.Object)
				}
			case m.Kind == fstree.Symlink:
				m.Target = string(seed)
			case m.Kind == fstree.CharDev || m.Kind == fstree.BlockDev:
				m.Rdev = rng.Uint64()
			}
			log.add(&m)
			want = append(want, m)
		}
		var got []Member
		if err := log.Replay(func(m *Member) error { got = append(got, *m); return nil }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("replayed\n%#v\nadded\n%#v", got[i], want[i])
				}
			}
			t.Fatalf("replayed %d, added %d", len(got), len(want))
		}
		// Damaged: an error or members, never a panic.
		if len(log.recs) > 0 {
			i := int(cut) % len(log.recs)
			log.recs[i] ^= seed0(seed)
			log.Replay(func(*Member) error { return nil })
			log.recs = log.recs[:i]
			log.Replay(func(*Member) error { return nil })
		}
	})
}

func seed0(b []byte) byte {
	if len(b) == 0 {
		return 0xff
	}
	return b[0] | 1
}
