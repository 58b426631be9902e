package testimage

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path"
	"strings"
	"time"
)

// member is one tar entry of a layer.
type member struct {
	path       string
	typ        FileType
	whiteout   bool // .wh.* or .wh..wh..opq; typ is TypeRegular
	mode       uint32
	uid, gid   int
	mtime      time.Time
	xattrs     map[string]string
	linkname   string // symlink target
	hardlinkTo string // tar path of the hardlink target
	content    *content
}

type layerSpec struct {
	members   []*member
	mediaType string
	createdBy string
}

// builder writes layers the way a container build tool would, while
// feeding every member to an applier so that later layers can consult the
// merged state (to repeat parent directory headers, or to link to files).
type builder struct {
	rng     *rand.Rand
	layers  []*layerSpec
	cur     *layerSpec
	emitted map[string]bool // directories with a header in the current layer
	// impliedDirs never get a header of their own; see addFile callers.
	impliedDirs map[string]bool
	applier     *applier
	layerTime   time.Time
}

func newBuilder() *builder {
	return &builder{applier: newApplier(), impliedDirs: map[string]bool{}}
}

// startLayer begins a layer. Each layer has its own random stream so that
// a layer's bytes depend only on the inputs meant to shape it (see
// Options.Version).
func (b *builder) startLayer(mediaType, createdBy string, rng *rand.Rand, layerTime time.Time) {
	b.cur = &layerSpec{mediaType: mediaType, createdBy: createdBy}
	b.layers = append(b.layers, b.cur)
	b.emitted = map[string]bool{}
	b.rng = rng
	b.layerTime = layerTime
	b.applier.startLayer(len(b.layers) - 1)
}

// mtime spreads timestamps over the hour after the layer's build time, in
// whole seconds: tar headers without sub-second times need no PAX mtime
// record, which matches what most build tools write.
func (b *builder) mtime() time.Time {
	return b.layerTime.Add(time.Duration(b.rng.IntN(3600)) * time.Second)
}

func (b *builder) emit(m *member) {
	b.cur.members = append(b.cur.members, m)
	b.applier.apply(m)
}

// parents writes a header for every ancestor of p not yet written in this
// layer, as real image builders do: upper layers repeat the directory
// headers of everything they change, carrying the directory's current
// metadata and a fresh mtime.
func (b *builder) parents(p string) {
	dir := path.Dir(p)
	if dir == "." || b.emitted[dir] {
		return
	}
	b.parents(dir)
	if b.impliedDirs[dir] {
		return
	}
	b.emitted[dir] = true
	m := &member{path: dir, typ: TypeDir, mode: 0o755, mtime: b.mtime()}
	if e, ok := b.applier.tree[dir]; ok && e.Type == TypeDir {
		m.mode, m.uid, m.gid, m.xattrs = e.Mode, e.UID, e.GID, maps.Clone(e.Xattrs)
	}
	b.emit(m)
}

type attr func(*member)

func owner(uid, gid int) attr { return func(m *member) { m.uid, m.gid = uid, gid } }

func xattr(name, value string) attr {
	return func(m *member) {
		if m.xattrs == nil {
			m.xattrs = map[string]string{}
		}
		m.xattrs[name] = value
	}
}

func (b *builder) add(m *member, attrs []attr) {
	for _, a := range attrs {
		a(m)
	}
	b.parents(m.path)
	b.emit(m)
}

func (b *builder) dir(p string, mode uint32, attrs ...attr) {
	if b.emitted[p] {
		panic(fmt.Sprintf("testimage: directory %q written twice in one layer; declare it before its children", p))
	}
	b.parents(p)
	b.emitted[p] = true
	m := &member{path: p, typ: TypeDir, mode: mode, mtime: b.mtime()}
	for _, a := range attrs {
		a(m)
	}
	b.emit(m)
}

func (b *builder) file(p string, mode uint32, c *content, attrs ...attr) {
	b.add(&member{path: p, typ: TypeRegular, mode: mode, mtime: b.mtime(), content: c}, attrs)
}

// generated returns content of the given size and kind drawn from the
// layer's random stream.
func (b *builder) generated(size int64, kind contentKind) *content {
	return &content{seed: b.rng.Uint64(), size: size, kind: kind}
}

func (b *builder) text(p string, mode uint32, s string, attrs ...attr) {
	b.file(p, mode, literalContent(s), attrs...)
}

func (b *builder) symlink(p, target string, attrs ...attr) {
	b.add(&member{path: p, typ: TypeSymlink, mode: 0o777, mtime: b.mtime(), linkname: target}, attrs)
}

// hardlink gives the new name the target's full metadata: containers/storage
// applies a hardlink header's mode, owner and xattrs to the shared inode, and
// tools that write hardlinks (docker, buildah) copy them from the inode.
func (b *builder) hardlink(p, target string) {
	t := b.applier.tree[target]
	if t == nil || t.Type != TypeRegular {
		panic(fmt.Sprintf("testimage: hardlink %q to %q, which is not a regular file", p, target))
	}
	b.add(&member{
		path: p, typ: TypeRegular, hardlinkTo: target,
		mode: t.Mode, uid: t.UID, gid: t.GID, mtime: t.ModTime, xattrs: maps.Clone(t.Xattrs),
	}, nil)
}

func (b *builder) whiteout(p string) {
	dir, base := path.Split(p)
	b.add(&member{path: dir + whiteoutPrefix + base, typ: TypeRegular, whiteout: true, mtime: b.layerTime, content: literalContent("")}, nil)
}

// opaque marks dir opaque. The directory header itself comes first, as
// image-spec asks for whiteouts to follow their directory.
func (b *builder) opaque(dir string) {
	if !b.emitted[dir] {
		e := b.applier.tree[dir]
		b.dir(dir, e.Mode, owner(e.UID, e.GID))
	}
	b.add(&member{path: dir + "/" + opaqueWhiteout, typ: TypeRegular, whiteout: true, mtime: b.layerTime, content: literalContent("")}, nil)
}

// randomName returns a name of 1..maxLen bytes drawn from a set that
// includes characters shells and naive path code trip over.
func (b *builder) randomName(prefix string, maxLen int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+@=,~ "
	n := 1 + b.rng.IntN(maxLen)
	var sb strings.Builder
	sb.WriteString(prefix)
	for range n {
		sb.WriteByte(alphabet[b.rng.IntN(len(alphabet))])
	}
	return sb.String()
}
