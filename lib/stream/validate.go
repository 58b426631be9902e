package stream

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits on what a record may hold. They bound the memory a hostile or
// broken producer can make a reader spend.
const (
	MaxNameBytes      = 255   // NAME_MAX
	MaxTargetBytes    = 4095  // PATH_MAX without the NUL
	MaxXattrNameBytes = 255   // XATTR_NAME_MAX
	MaxXattrValue     = 65536 // XATTR_SIZE_MAX
	MaxEntryLine      = 1 << 20
	MaxImageLine      = 32 << 20
)

// CheckPath reports whether p is an absolute, clean path: "/" or
// "/a/b" with no empty, "." or ".." component, no NUL and no name longer
// than NAME_MAX.
func CheckPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if p[0] != '/' {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("path %q contains a NUL byte", p)
	}
	if p == "/" {
		return nil
	}
	// Name by name without splitting: no allocation per path.
	for rest := p[1:]; ; {
		name, tail, more := strings.Cut(rest, "/")
		switch {
		case name == "":
			return fmt.Errorf("path %q is not clean (empty component or trailing slash)", p)
		case name == "." || name == "..":
			return fmt.Errorf("path %q is not clean (contains %q)", p, name)
		case len(name) > MaxNameBytes:
			return fmt.Errorf("path %q has a name longer than %d bytes", p, MaxNameBytes)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

func checkHex(field, v string, sizes ...int) error {
	if v == "" {
		return nil
	}
	okSize := false
	for _, n := range sizes {
		okSize = okSize || len(v) == n
	}
	if !okSize {
		return fmt.Errorf("%s %q has %d hex digits, want %v", field, v, len(v), sizes)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%s %q is not lowercase hex", field, v)
		}
	}
	return nil
}

// checkEntryHex is checkHex of e's field, named "<path>: <field>" in its
// error; the name is only built for an error.
func checkEntryHex(e *Entry, field, v string, sizes ...int) error {
	if validHex(v, sizes...) {
		return nil
	}
	return checkHex(e.Path+": "+field, v, sizes...)
}

func validHex(v string, sizes ...int) bool {
	if v == "" {
		return true
	}
	if !slices.Contains(sizes, len(v)) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkDigest(field, d string) error {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return fmt.Errorf("%s %q is not a sha256: digest", field, d)
	}
	return checkHex(field, hexPart, 64)
}

func checkDocument(field, doc, digest string) error {
	if doc == "" {
		return fmt.Errorf("%s is empty", field)
	}
	sum := sha256.Sum256([]byte(doc))
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return fmt.Errorf("%s text has digest %s, but the record says %s", field, got, digest)
	}
	return nil
}

// CheckImage validates an image record on its own.
func CheckImage(img *Image) error {
	if img.Version != Version {
		return fmt.Errorf("object list version %d is not supported (this tool reads version %d)", img.Version, Version)
	}
	if err := checkDigest("manifestDigest", img.ManifestDigest); err != nil {
		return err
	}
	if err := checkDigest("configDigest", img.ConfigDigest); err != nil {
		return err
	}
	if err := checkImageText(img); err != nil {
		return err
	}
	if err := checkDocument("manifest", img.Manifest, img.ManifestDigest); err != nil {
		return err
	}
	if err := checkDocument("config", img.Config, img.ConfigDigest); err != nil {
		return err
	}
	for i, l := range img.Layers {
		if err := checkDigest(fmt.Sprintf("layers[%d].digest", i), l.Digest); err != nil {
			return err
		}
		if err := checkDigest(fmt.Sprintf("layers[%d].diffID", i), l.DiffID); err != nil {
			return err
		}
	}
	return nil
}

// checkImageText refuses text a JSON string cannot carry: encoding/json
// would write U+FFFD in its place, and the record would no longer say
// what the producer meant (a manifest would no longer match its digest).
func checkImageText(img *Image) error {
	text := map[string]string{"source": img.Source, "manifest": img.Manifest, "config": img.Config}
	for i, l := range img.Layers {
		text[fmt.Sprintf("layers[%d].mediaType", i)] = l.MediaType
	}
	if s := img.Stores.Composefs; s != nil {
		text["stores.composefs.repo"], text["stores.composefs.tag"] = s.Repo, s.Tag
	}
	if s := img.Stores.ContainersStorage; s != nil {
		text["stores.containersStorage.root"], text["stores.containersStorage.runRoot"] = s.Root, s.RunRoot
	}
	if s := img.Stores.Ostree; s != nil {
		text["stores.ostree.repo"], text["stores.ostree.mode"] = s.Repo, s.Mode
	}
	for _, name := range slices.Sorted(maps.Keys(text)) {
		if !utf8.ValidString(text[name]) {
			return fmt.Errorf("image record: %s is not valid UTF-8", name)
		}
	}
	return nil
}

// checkEntryFields validates what an entry says about itself, without
// regard to its neighbours.
func checkEntryFields(e *Entry) error {
	if !IsEntryType(e.Type) {
		if e.Type == "" {
			return errors.New("record has no type")
		}
		return fmt.Errorf("unknown record type %q", e.Type)
	}
	if err := CheckPath(e.Path); err != nil {
		return err
	}
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("%s: mode %#o has bits outside 07777 (the type belongs in \"type\")", e.Path, e.Mode)
	}
	for name, value := range e.Xattrs {
		switch {
		case name == "":
			return fmt.Errorf("%s: empty xattr name", e.Path)
		case len(name) > MaxXattrNameBytes:
			return fmt.Errorf("%s: xattr name %q is longer than %d bytes", e.Path, name, MaxXattrNameBytes)
		case strings.IndexByte(name, 0) >= 0:
			return fmt.Errorf("%s: xattr name %q contains a NUL byte", e.Path, name)
		case !utf8.ValidString(name):
			return fmt.Errorf("%s: xattr name %q is not valid UTF-8 and cannot travel in the stream", e.Path, name)
		case len(value) > MaxXattrValue:
			return fmt.Errorf("%s: xattr %s value is %d bytes, more than %d", e.Path, name, len(value), MaxXattrValue)
		}
	}
	if e.Type != TypeFile && (e.Size != 0 || e.Inline != nil || e.Composefs != "" || e.Src != "") {
		return fmt.Errorf("%s: a %s record carries regular-file fields", e.Path, e.Type)
	}
	if e.Ostree != "" && e.Type != TypeFile && e.Type != TypeSymlink {
		return fmt.Errorf("%s: a %s record has an ostree checksum (only files and symlinks are ostree objects)", e.Path, e.Type)
	}
	if err := checkEntryHex(e, "ostree", e.Ostree, 64); err != nil {
		return err
	}
	switch e.Type {
	case TypeFile:
		return checkFile(e)
	case TypeSymlink:
		switch {
		case e.Target == "":
			return fmt.Errorf("%s: symlink has an empty target", e.Path)
		case len(e.Target) > MaxTargetBytes:
			return fmt.Errorf("%s: symlink target is %d bytes, more than %d", e.Path, len(e.Target), MaxTargetBytes)
		case strings.IndexByte(e.Target, 0) >= 0:
			return fmt.Errorf("%s: symlink target contains a NUL byte", e.Path)
		}
	case TypeHardlink:
		if err := CheckPath(e.LinkTo); err != nil {
			return fmt.Errorf("%s: hardlink target: %w", e.Path, err)
		}
	case TypeFifo, TypeSocket, TypeDir:
		if e.Rdev != 0 {
			return fmt.Errorf("%s: a %s record has a device number", e.Path, e.Type)
		}
	}
	if e.Type != TypeSymlink && e.Target != "" {
		return fmt.Errorf("%s: a %s record has a symlink target", e.Path, e.Type)
	}
	if e.Type != TypeHardlink && e.LinkTo != "" {
		return fmt.Errorf("%s: a %s record has a hardlink target", e.Path, e.Type)
	}
	return nil
}

func checkFile(e *Entry) error {
	switch {
	case e.Size < 0:
		return fmt.Errorf("%s: negative size %d", e.Path, e.Size)
	case e.Size <= InlineMax && int64(len(e.Inline)) != e.Size:
		return fmt.Errorf("%s: a %d-byte file must carry its %d bytes inline, has %d", e.Path, e.Size, e.Size, len(e.Inline))
	case e.Size > InlineMax && e.Inline != nil:
		return fmt.Errorf("%s: a %d-byte file is larger than the %d-byte inline limit but carries inline bytes", e.Path, e.Size, InlineMax)
	case e.Size > InlineMax && e.Composefs == "" && e.Ostree == "" && e.Src == "":
		return fmt.Errorf("%s: a %d-byte file names no object (composefs, ostree or src)", e.Path, e.Size)
	}
	if err := checkEntryHex(e, "composefs", e.Composefs, 64, 128); err != nil {
		return err
	}
	if e.Src != "" {
		if err := CheckPath(e.Src); err != nil {
			return fmt.Errorf("%s: src: %w", e.Path, err)
		}
	}
	return nil
}

// treeOrder checks that entries arrive in pre-order with siblings sorted
// bytewise, each parent an open directory. It keeps one frame per open
// directory, so its memory grows with depth, plus one word per regular
// file so a hardlink can be checked against an earlier file.
type treeOrder struct {
	open   []frame
	closed []string
	files  map[uint64]struct{}
	seed   maphash.Seed
	count  int64
}

type frame struct {
	dir       string
	lastChild string
}

func newTreeOrder() *treeOrder {
	return &treeOrder{files: make(map[uint64]struct{}), seed: maphash.MakeSeed()}
}

// add checks e against what came before and records it. closed is set to
// the directories finished by e's arrival, deepest first.
func (o *treeOrder) add(e *Entry) error {
	o.closed = o.closed[:0]
	if o.count == 0 {
		if e.Path != "/" || e.Type != TypeDir {
			return fmt.Errorf("the first entry must be the root directory \"/\", got %s %q", e.Type, e.Path)
		}
		o.open = append(o.open, frame{dir: "/"})
		o.count++
		return nil
	}
	if e.Path == "/" {
		return errors.New("a second root directory \"/\"")
	}
	parent, name := path.Split(e.Path)
	if parent != "/" {
		parent = parent[:len(parent)-1]
	}
	for len(o.open) > 0 && o.open[len(o.open)-1].dir != parent {
		o.closed = append(o.closed, o.open[len(o.open)-1].dir)
		o.open = o.open[:len(o.open)-1]
	}
	if len(o.open) == 0 {
		return fmt.Errorf("%s: parent %s is not an open directory (entries must be in pre-order, each after its parent directory)", e.Path, parent)
	}
	top := &o.open[len(o.open)-1]
	if top.lastChild != "" {
		switch {
		case name == top.lastChild:
			return fmt.Errorf("%s: duplicate entry", e.Path)
		case name < top.lastChild:
			return fmt.Errorf("%s: out of order: siblings must be sorted bytewise, and %q came before it", e.Path, top.lastChild)
		}
	}
	top.lastChild = name
	switch e.Type {
	case TypeDir:
		o.open = append(o.open, frame{dir: e.Path})
	case TypeFile:
		o.files[maphash.String(o.seed, e.Path)] = struct{}{}
	case TypeHardlink:
		if _, ok := o.files[maphash.String(o.seed, e.LinkTo)]; !ok {
			return fmt.Errorf("%s: hardlink target %s is not an earlier regular file", e.Path, e.LinkTo)
		}
	}
	o.count++
	return nil
}

// finish closes every directory still open, deepest first.
func (o *treeOrder) finish() {
	o.closed = o.closed[:0]
	for i := len(o.open) - 1; i >= 0; i-- {
		o.closed = append(o.closed, o.open[i].dir)
	}
	o.open = o.open[:0]
}
