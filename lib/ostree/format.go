package ostree

import (
	"encoding/hex"
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"unicode/utf8"
)

// The GVariant types of ostree's objects (ostree-core.h).
var (
	fileHeaderType = mustGVType("(uuuusa(ayay))")
	dirMetaType    = mustGVType("(uuua(ayay))")
	dirTreeType    = mustGVType("(a(say)a(sayay))")
	commitType     = mustGVType("(a{sv}aya(say)sstayay)")
)

const (
	sIFMT  = 0o170000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFDIR = 0o040000
	// permMask is every bit ostree lets a mode carry besides the type.
	permMask = 0o7777
)

// ostree stores uid, gid, mode and the commit timestamp big-endian inside
// GVariant integers, which are themselves little-endian; so the Go value
// handed to the serializer is the byte-swapped number.
func be32(x uint32) uint32 { return bits.ReverseBytes32(x) }
func be64(x uint64) uint64 { return bits.ReverseBytes64(x) }

// FileMeta is the metadata that, with the content, names a file object.
type FileMeta struct {
	UID, GID uint32
	// Mode holds only permission bits (07777, setuid/setgid/sticky
	// included); whether the object is a regular file or a symlink is
	// decided by the call that writes it. Symlinks always get 0777,
	// whatever Mode says, because that is what lstat reports and what
	// fsck recomputes.
	Mode   uint32
	Xattrs map[string][]byte
}

func (m FileMeta) validate() error {
	if m.Mode&^permMask != 0 {
		return fmt.Errorf("file mode %#o has bits outside 07777", m.Mode)
	}
	return nil
}

// fileHeader is the (uuuusa(ayay)) GVariant the content checksum covers.
func fileHeader(m FileMeta, symlinkTarget string, isSymlink bool) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	mode := sIFREG | m.Mode
	if isSymlink {
		if symlinkTarget == "" {
			return nil, fmt.Errorf("symlink with an empty target")
		}
		mode = sIFLNK | 0o777
	}
	xs, err := canonicalXattrs(m.Xattrs)
	if err != nil {
		return nil, err
	}
	return appendGVariant(nil, fileHeaderType, []any{
		be32(m.UID), be32(m.GID), be32(mode), uint32(0), symlinkTarget, xattrsValue(xs),
	})
}

// DirMeta is a directory's metadata object. Mode holds permission bits only.
type DirMeta struct {
	UID, GID uint32
	Mode     uint32
	Xattrs   map[string][]byte
}

// Bytes is the serialized .dirmeta object; its sha256 is its name.
func (m DirMeta) Bytes() ([]byte, error) {
	if m.Mode&^permMask != 0 {
		return nil, fmt.Errorf("directory mode %#o has bits outside 07777", m.Mode)
	}
	return ostreeMeta(m.UID, m.GID, sIFDIR|m.Mode, m.Xattrs)
}

// ostreeMeta serializes (uuua(ayay)) with a full st_mode: the layout of
// both .dirmeta objects and bare-user's user.ostreemeta xattr.
func ostreeMeta(uid, gid, fullMode uint32, xattrs map[string][]byte) ([]byte, error) {
	xs, err := canonicalXattrs(xattrs)
	if err != nil {
		return nil, err
	}
	return appendGVariant(nil, dirMetaType, []any{be32(uid), be32(gid), be32(fullMode), xattrsValue(xs)})
}

// ParseDirMeta reads a .dirmeta object.
func ParseDirMeta(data []byte) (DirMeta, error) {
	v, err := decodeGVariant(dirMetaType, data)
	if err != nil {
		return DirMeta{}, fmt.Errorf("dirmeta: %w", err)
	}
	f := v.([]any)
	mode := be32(f[2].(uint32))
	if mode&sIFMT != sIFDIR || mode&^(sIFMT|permMask) != 0 {
		return DirMeta{}, fmt.Errorf("dirmeta: mode %#o is not a directory mode", mode)
	}
	xs, err := xattrsFromValue(f[3])
	if err != nil {
		return DirMeta{}, fmt.Errorf("dirmeta: %w", err)
	}
	return DirMeta{UID: be32(f[0].(uint32)), GID: be32(f[1].(uint32)), Mode: mode & permMask, Xattrs: XattrMap(xs)}, nil
}

// DirTreeFile is a regular file or symlink in a directory.
type DirTreeFile struct {
	Name     string
	Checksum string // content checksum, hex
}

// DirTreeDir is a subdirectory.
type DirTreeDir struct {
	Name         string
	TreeChecksum string // .dirtree, hex
	MetaChecksum string // .dirmeta, hex
}

// DirTree is a directory's listing object.
type DirTree struct {
	Files []DirTreeFile
	Dirs  []DirTreeDir
}

// ValidateFilename applies ostree's rules for a dirtree entry name.
func ValidateFilename(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty file name")
	case name == "." || name == "..":
		return fmt.Errorf("invalid file name %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("file name %q contains '/' or NUL", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %q is not UTF-8", name)
	}
	return nil
}

// Bytes sorts both lists as ostree requires (bytewise by name, each list
// on its own; lookups binary-search them), rejects duplicate names across
// both lists, and serializes the .dirtree object.
func (t DirTree) Bytes() ([]byte, error) {
	files := append([]DirTreeFile(nil), t.Files...)
	dirs := append([]DirTreeDir(nil), t.Dirs...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].Name < dirs[j].Name })
	seen := make(map[string]bool, len(files)+len(dirs))
	fv := make([]any, len(files))
	for i, f := range files {
		if err := ValidateFilename(f.Name); err != nil {
			return nil, err
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("duplicate name %q in directory", f.Name)
		}
		seen[f.Name] = true
		c, err := checksumBytes(f.Checksum)
		if err != nil {
			return nil, fmt.Errorf("file %q: %w", f.Name, err)
		}
		fv[i] = []any{f.Name, c}
	}
	dv := make([]any, len(dirs))
	for i, d := range dirs {
		if err := ValidateFilename(d.Name); err != nil {
			return nil, err
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("duplicate name %q in directory", d.Name)
		}
		seen[d.Name] = true
		tc, err := checksumBytes(d.TreeChecksum)
		if err != nil {
			return nil, fmt.Errorf("directory %q tree: %w", d.Name, err)
		}
		mc, err := checksumBytes(d.MetaChecksum)
		if err != nil {
			return nil, fmt.Errorf("directory %q meta: %w", d.Name, err)
		}
		dv[i] = []any{d.Name, tc, mc}
	}
	return appendGVariant(nil, dirTreeType, []any{fv, dv})
}

// ParseDirTree reads a .dirtree object.
func ParseDirTree(data []byte) (DirTree, error) {
	v, err := decodeGVariant(dirTreeType, data)
	if err != nil {
		return DirTree{}, fmt.Errorf("dirtree: %w", err)
	}
	f := v.([]any)
	var t DirTree
	for _, it := range f[0].([]any) {
		e := it.([]any)
		c := e[1].([]byte)
		if len(c) != 32 {
			return DirTree{}, fmt.Errorf("dirtree: file %q: checksum of length %d", e[0], len(c))
		}
		t.Files = append(t.Files, DirTreeFile{Name: e[0].(string), Checksum: hex.EncodeToString(c)})
	}
	for _, it := range f[1].([]any) {
		e := it.([]any)
		tc, mc := e[1].([]byte), e[2].([]byte)
		if len(tc) != 32 || len(mc) != 32 {
			return DirTree{}, fmt.Errorf("dirtree: directory %q: bad checksum length", e[0])
		}
		t.Dirs = append(t.Dirs, DirTreeDir{Name: e[0].(string), TreeChecksum: hex.EncodeToString(tc), MetaChecksum: hex.EncodeToString(mc)})
	}
	return t, nil
}

// MetaEntry is one key of a commit's a{sv} metadata.
type MetaEntry struct {
	Key   string
	Value Variant
}

// MetaString and friends build metadata values of the types ostree and
// ostree-ext use.
func MetaString(key, value string) MetaEntry {
	return MetaEntry{key, Variant{"s", value}}
}
func MetaBool(key string, value bool) MetaEntry { return MetaEntry{key, Variant{"b", value}} }

// MetaUint64 stores a t big-endian, ostree's convention for integers in
// metadata (its own uint64 keys, like the summary's
// ostree.commit.timestamp, are GUINT64_TO_BE'd, and `ostree show` swaps
// values back when it prints them). Read it back with MetaUint64Value.
func MetaUint64(key string, value uint64) MetaEntry {
	return MetaEntry{key, Variant{"t", be64(value)}}
}

// MetaUint64Value decodes a value written by MetaUint64.
func MetaUint64Value(v Variant) (uint64, bool) {
	x, ok := v.Value.(uint64)
	return be64(x), ok && v.Type == "t"
}
func MetaStrings(key string, values ...string) MetaEntry {
	v := make([]any, len(values))
	for i, s := range values {
		v[i] = s
	}
	return MetaEntry{key, Variant{"as", v}}
}
func MetaBytes(key string, value []byte) MetaEntry { return MetaEntry{key, Variant{"ay", value}} }

// SortMetadata orders keys bytewise, as ostree-ext does (it builds the
// map from a BTreeMap). The order changes the commit checksum, so writers
// that want reproducible ids should sort.
func SortMetadata(m []MetaEntry) {
	sort.SliceStable(m, func(i, j int) bool { return m[i].Key < m[j].Key })
}

// Commit is a commit object.
type Commit struct {
	Metadata  []MetaEntry // serialized in this order
	Parent    string      // hex, or "" for none
	Subject   string
	Body      string
	Timestamp uint64 // Unix seconds, UTC
	RootTree  string // hex
	RootMeta  string // hex
}

// Bytes serializes the .commit object.
func (c Commit) Bytes() ([]byte, error) {
	meta := make([]any, len(c.Metadata))
	seen := map[string]bool{}
	for i, e := range c.Metadata {
		if e.Key == "" {
			return nil, fmt.Errorf("commit metadata with an empty key")
		}
		if seen[e.Key] {
			return nil, fmt.Errorf("commit metadata key %q given twice", e.Key)
		}
		seen[e.Key] = true
		meta[i] = []any{e.Key, e.Value}
	}
	var parent []byte
	if c.Parent != "" {
		p, err := checksumBytes(c.Parent)
		if err != nil {
			return nil, fmt.Errorf("commit parent: %w", err)
		}
		parent = p
	}
	tree, err := checksumBytes(c.RootTree)
	if err != nil {
		return nil, fmt.Errorf("commit root tree: %w", err)
	}
	rmeta, err := checksumBytes(c.RootMeta)
	if err != nil {
		return nil, fmt.Errorf("commit root meta: %w", err)
	}
	b, err := appendGVariant(nil, commitType, []any{
		meta, parent, []any{}, c.Subject, c.Body, be64(c.Timestamp), tree, rmeta,
	})
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return b, nil
}

// ParseCommit reads a .commit object.
func ParseCommit(data []byte) (Commit, error) {
	v, err := decodeGVariant(commitType, data)
	if err != nil {
		return Commit{}, fmt.Errorf("commit: %w", err)
	}
	f := v.([]any)
	var c Commit
	for _, it := range f[0].([]any) {
		e := it.([]any)
		c.Metadata = append(c.Metadata, MetaEntry{Key: e[0].(string), Value: e[1].(Variant)})
	}
	hexOf := func(b []byte, what string, optional bool) (string, error) {
		if optional && len(b) == 0 {
			return "", nil
		}
		if len(b) != 32 {
			return "", fmt.Errorf("commit: %s checksum of length %d", what, len(b))
		}
		return hex.EncodeToString(b), nil
	}
	if c.Parent, err = hexOf(f[1].([]byte), "parent", true); err != nil {
		return Commit{}, err
	}
	c.Subject, c.Body = f[3].(string), f[4].(string)
	c.Timestamp = be64(f[5].(uint64))
	if c.RootTree, err = hexOf(f[6].([]byte), "root tree", false); err != nil {
		return Commit{}, err
	}
	if c.RootMeta, err = hexOf(f[7].([]byte), "root meta", false); err != nil {
		return Commit{}, err
	}
	return c, nil
}

// Lookup returns the metadata value for key.
func (c Commit) Lookup(key string) (Variant, bool) {
	for _, e := range c.Metadata {
		if e.Key == key {
			return e.Value, true
		}
	}
	return Variant{}, false
}
