package dumpfile

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cfs-project/cfs/lib/erofs"
)

// Limits mkcomposefs applies to dumpfile input; we apply the same so that a
// dumpfile we accept is one it accepts.
const (
	maxXattrBytes = 65535 / 2 // per inode, counted as mkcomposefs does
	maxXattrName  = 255
	maxXattrValue = 65535
	maxPayload    = 4095
	maxLineXattrs = 65535
)

// Error is a parse error; it names the line.
type Error struct {
	Name string // input name, e.g. the file path
	Line int
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

type pendingLink struct {
	node   *erofs.Node
	target string
	line   int
}

type parser struct {
	name   string
	root   *erofs.Node
	links  []pendingLink
	lineNo int
}

// Parse reads a dumpfile and returns the tree it describes. name is used in
// error messages. A missing final newline is accepted, as by mkcomposefs.
func Parse(r io.Reader, name string) (*erofs.Node, error) {
	p := &parser{name: name}
	br := bufio.NewReaderSize(r, 1<<16)
	lineNo := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if line == "" && err == io.EOF {
			break
		}
		lineNo++
		p.lineNo = lineNo
		line = strings.TrimSuffix(line, "\n")
		if perr := p.line(line); perr != nil {
			return nil, &Error{Name: name, Line: lineNo, Err: perr}
		}
		if err == io.EOF {
			break
		}
	}
	if p.root == nil {
		return nil, fmt.Errorf("%s: no root directory", name)
	}
	for _, l := range p.links {
		if err := p.resolve(l); err != nil {
			return nil, &Error{Name: name, Line: l.line, Err: err}
		}
	}
	return p.root, nil
}

func (p *parser) resolve(l pendingLink) error {
	t, err := p.lookup(l.target)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", l.target, err)
	}
	if t == l.node {
		return fmt.Errorf("hardlink %q points to itself", l.target)
	}
	l.node.LinkTo = t
	if r := t.Inode(); r.LinkTo != nil || r == l.node {
		return fmt.Errorf("hardlink cycle through %q", l.target)
	}
	if t.Inode().IsDir() {
		return fmt.Errorf("hardlink %q points to a directory", l.target)
	}
	return nil
}

func splitPath(path string) ([]string, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q is not absolute", path)
	}
	if path == "/" {
		return nil, nil
	}
	parts := strings.Split(path[1:], "/")
	for _, c := range parts {
		if err := erofs.ValidName(c); err != nil {
			return nil, fmt.Errorf("path %q: %w", path, err)
		}
	}
	return parts, nil
}

func (p *parser) lookup(path string) (*erofs.Node, error) {
	parts, err := splitPath(path)
	if err != nil {
		return nil, err
	}
	n := p.root
	for _, c := range parts {
		if n = n.Lookup(c); n == nil {
			return nil, fmt.Errorf("no such file")
		}
	}
	return n, nil
}

func parseUint(field, what string, base int, bits int) (uint64, error) {
	v, err := strconv.ParseUint(field, base, bits)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q", what, field)
	}
	return v, nil
}

func (p *parser) line(line string) error {
	if strings.IndexByte(line, 0) >= 0 {
		return errors.New("embedded NUL character")
	}
	var f [11]string
	rest := line
	for i := range f {
		j := strings.IndexByte(rest, ' ')
		if j < 0 {
			f[i], rest = rest, ""
		} else {
			f[i], rest = rest[:j], rest[j+1:]
		}
	}
	path, err := unescape(f[0])
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if path == "" {
		return errors.New("empty path")
	}
	modeField := f[2]
	isLink := strings.HasPrefix(modeField, "@")
	if isLink {
		modeField = modeField[1:]
	}
	mode, err := parseUint(modeField, "mode", 8, 32)
	if err != nil {
		return err
	}
	if !erofs.ValidType(uint32(mode)) {
		return fmt.Errorf("invalid mode %o: no file type", mode)
	}
	n := &erofs.Node{Mode: uint32(mode)}
	if err := p.add(path, n); err != nil {
		return err
	}
	if isLink {
		if mode&erofs.TypeMask == erofs.TypeDir {
			return fmt.Errorf("%s: directories can't be hardlinked", path)
		}
		target, ok, err := unescapeOptional(f[8])
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		if !ok {
			return fmt.Errorf("%s: hardlink without a target", path)
		}
		// The target may come later in the file: resolve at the end.
		p.links = append(p.links, pendingLink{node: n, target: target, line: p.lineNo})
		return nil
	}
	return p.fill(n, path, f, rest)
}

func (p *parser) add(path string, n *erofs.Node) error {
	parts, err := splitPath(path)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		if n.Mode&erofs.TypeMask != erofs.TypeDir {
			return errors.New("root must be a directory")
		}
		if p.root != nil {
			return errors.New("root appears twice")
		}
		p.root = n
		return nil
	}
	if p.root == nil {
		return errors.New("the root directory must come first")
	}
	dir := p.root
	for _, c := range parts[:len(parts)-1] {
		if dir = dir.Lookup(c); dir == nil {
			return fmt.Errorf("%s: parent directory missing", path)
		}
	}
	if !dir.IsDir() {
		return fmt.Errorf("%s: parent is not a directory", path)
	}
	n.Name = parts[len(parts)-1]
	if dir.Lookup(n.Name) != nil {
		return fmt.Errorf("%s: already exists", path)
	}
	return dir.AddChild(n)
}

func (p *parser) fill(n *erofs.Node, path string, f [11]string, rest string) error {
	size, err := parseUint(f[1], "size", 10, 64)
	if err != nil {
		return err
	}
	nlink, err := parseUint(f[3], "nlink", 10, 32)
	if err != nil {
		return err
	}
	uid, err := parseUint(f[4], "uid", 10, 32)
	if err != nil {
		return err
	}
	gid, err := parseUint(f[5], "gid", 10, 32)
	if err != nil {
		return err
	}
	rdev, err := parseUint(f[6], "rdev", 10, 64)
	if err != nil {
		return err
	}
	sec, nsec, ok := strings.Cut(f[7], ".")
	if !ok {
		return fmt.Errorf("invalid mtime %q", f[7])
	}
	msec, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid mtime %q", f[7])
	}
	mnsec, err := parseUint(nsec, "mtime nanoseconds", 10, 32)
	if err != nil || mnsec >= 1e9 {
		return fmt.Errorf("invalid mtime %q", f[7])
	}
	payload, hasPayload, err := unescapeOptional(f[8])
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	content, hasContent, err := unescapeOptional(f[9])
	if err != nil {
		return fmt.Errorf("content: %w", err)
	}
	digest, hasDigest, err := unescapeOptional(f[10])
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	typ := n.Mode & erofs.TypeMask
	n.Size, n.Nlink, n.UID, n.GID = size, uint32(nlink), uint32(uid), uint32(gid)
	n.MtimeSec, n.MtimeNsec = msec, uint32(mnsec)
	if typ == erofs.TypeChar || typ == erofs.TypeBlock {
		n.Rdev = rdev
	}
	if hasPayload && len(payload) > maxPayload {
		return fmt.Errorf("payload longer than %d bytes", maxPayload)
	}
	if typ == erofs.TypeSymlink {
		if !hasPayload || payload == "" {
			return errors.New("symlink without a target")
		}
		n.Size = uint64(len(payload))
	}
	n.Payload = payload
	if hasContent && typ != erofs.TypeSymlink {
		if uint64(len(content)) != size {
			return fmt.Errorf("content is %d bytes but size is %d", len(content), size)
		}
		if len(content) > erofs.MaxInlineContent {
			return fmt.Errorf("inline content of %d bytes exceeds the maximum %d", len(content), erofs.MaxInlineContent)
		}
		if len(content) > 0 {
			n.Content = []byte(content)
		}
	}
	if hasDigest && digest != "" {
		d, err := hex.DecodeString(digest)
		if err != nil || (len(d) != 32 && len(d) != 64) {
			return fmt.Errorf("invalid digest %q: want 64 or 128 hex digits", digest)
		}
		n.Digest = d
	}
	if typ == erofs.TypeRegular && n.Size > 0 && n.Content == nil {
		if _, count := chunkCount(n.Size); count > 1024 {
			return fmt.Errorf("file size %d is too large", n.Size)
		}
	}
	if len(rest) > maxLineXattrs {
		return errors.New("too many xattrs")
	}
	if rest == "" {
		return nil
	}
	fields := strings.Split(rest, " ")
	if fields[len(fields)-1] == "" {
		fields = fields[:len(fields)-1]
	}
	var total int
	for _, x := range fields {
		k, v, ok := strings.Cut(x, "=")
		if !ok {
			return fmt.Errorf("xattr %q: missing '='", x)
		}
		key, err := unescape(k)
		if err != nil {
			return fmt.Errorf("xattr name %q: %w", k, err)
		}
		val, err := unescape(v)
		if err != nil {
			return fmt.Errorf("xattr %s value: %w", key, err)
		}
		if len(key) == 0 || len(key) > maxXattrName {
			return fmt.Errorf("xattr name %q: length must be 1..%d", key, maxXattrName)
		}
		if len(val) > maxXattrValue {
			return fmt.Errorf("xattr %s: value of %d bytes is too long", key, len(val))
		}
		// mkcomposefs's accounting: worst-case alignment per entry plus
		// the ibody header once; a replaced value is first taken out.
		count := len(n.Xattrs)
		if old, exists := n.GetXattr(key); exists {
			total -= 7 + len(key) + len(old)
			count--
			if count == 0 {
				total = 0
			}
		}
		entry := 7 + len(key) + len(val)
		if count == 0 {
			entry += 12
		}
		if total+entry > maxXattrBytes {
			return fmt.Errorf("xattrs exceed %d bytes", maxXattrBytes)
		}
		total += entry
		n.SetXattr(key, []byte(val))
	}
	return nil
}

// chunkCount mirrors the image writer's chunking of external files, whose
// chunk map must fit in one block.
func chunkCount(size uint64) (uint32, uint64) {
	b := uint32(0)
	for v := size - 1; v > 0; v >>= 1 {
		b++
	}
	if b < 12 {
		b = 12
	}
	if b > 43 {
		b = 43
	}
	return b, (size + (1 << b) - 1) >> b
}
