// Package oci turns OCI image layers into the contents of a composefs
// repository: each layer tar is stored as a splitstream whose large file
// bodies are objects, and the layers are merged into one filesystem tree
// with overlayfs whiteout semantics, as composefs-rs does it.
package oci

import (
	"fmt"
	"math"
	"strings"

	"github.com/vbatts/tar-split/archive/tar"

	"github.com/cfs-project/cfs/lib/fstree"
)

// InlineMax is the largest regular member stored inline in a layer
// splitstream; larger bodies become objects (composefs-rs
// INLINE_CONTENT_MAX_V0).
const InlineMax = 64

// Member is one tar member of a layer, checked and cleaned.
type Member struct {
	Path     string // absolute and clean; "/" for the root
	Kind     fstree.Kind
	Dir      bool
	Hardlink string // absolute path of the target, for hardlinks
	Stat     fstree.Stat
	Size     int64
	Inline   []byte // regular bodies of at most InlineMax bytes
	Object   []byte // fs-verity digest of a larger body
	Target   string // symlinks
	Rdev     uint64
}

// cleanPath makes a relative member name absolute and refuses any ".."
// component and any absolute name: nothing in a layer may name a path
// outside the image, and layer writers never produce absolute names.
func cleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("path %q contains a NUL byte", name)
	}
	if strings.HasPrefix(name, "/") && strings.Trim(name, "/") != "" {
		return "", fmt.Errorf("path %q is absolute; layer members must be relative", name)
	}
	var parts []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("path %q escapes the image (contains \"..\")", name)
		}
		if len(c) > 255 {
			return "", fmt.Errorf("path %q has a name longer than 255 bytes", name)
		}
		parts = append(parts, c)
	}
	return "/" + strings.Join(parts, "/"), nil
}

func makedev(major, minor int64) uint64 {
	// glibc's encoding, which is what composefs stores as i_u.
	ma, mi := uint64(major), uint64(minor)
	return (ma&0xfffff000)<<32 | (ma&0xfff)<<8 | (mi&0xffffff00)<<12 | mi&0xff
}

// memberFromHeader checks a header and fills everything but the body.
func memberFromHeader(hdr *tar.Header) (*Member, error) {
	p, err := cleanPath(hdr.Name)
	if err != nil {
		return nil, err
	}
	if hdr.Uid < 0 || hdr.Uid > math.MaxUint32 || hdr.Gid < 0 || hdr.Gid > math.MaxUint32 {
		return nil, fmt.Errorf("%s: uid/gid %d/%d out of range", p, hdr.Uid, hdr.Gid)
	}
	if hdr.Mode < 0 {
		return nil, fmt.Errorf("%s: negative mode", p)
	}
	m := &Member{Path: p, Stat: fstree.Stat{
		Mode:  uint32(hdr.Mode) & 0o7777,
		UID:   uint32(hdr.Uid),
		GID:   uint32(hdr.Gid),
		Mtime: hdr.ModTime.Unix(),
	}}
	if _, ok := hdr.PAXRecords["mtime"]; ok {
		m.Stat.MtimeNsec = uint32(hdr.ModTime.Nanosecond())
	}
	for key, value := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(key, "SCHILY.xattr."); ok {
			if name == "" || len(name) > 255 || len(value) > 65536 {
				return nil, fmt.Errorf("%s: invalid xattr %q", p, name)
			}
			if m.Stat.Xattrs == nil {
				m.Stat.Xattrs = make(map[string][]byte)
			}
			if name == "security.capability" {
				if err := checkCapability([]byte(value)); err != nil {
					return nil, fmt.Errorf("%s: %w", p, err)
				}
			}
			m.Stat.Xattrs[name] = []byte(value)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont:
		m.Kind = fstree.Regular
		if hdr.Size < 0 {
			return nil, fmt.Errorf("%s: negative size", p)
		}
		m.Size = hdr.Size
	case tar.TypeDir:
		m.Dir = true
	case tar.TypeSymlink:
		m.Kind = fstree.Symlink
		if hdr.Linkname == "" || len(hdr.Linkname) > 4095 || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return nil, fmt.Errorf("%s: invalid symlink target %q", p, hdr.Linkname)
		}
		m.Target = hdr.Linkname
	case tar.TypeLink:
		// Hardlink targets name a member of the archive; some writers
		// spell them absolute, which means the same thing.
		target, err := cleanPath(strings.TrimLeft(hdr.Linkname, "/"))
		if err != nil {
			return nil, fmt.Errorf("%s: hardlink target: %w", p, err)
		}
		if target == "/" {
			return nil, fmt.Errorf("%s: hardlink to the root directory", p)
		}
		m.Hardlink = target
	case tar.TypeChar, tar.TypeBlock:
		m.Kind = fstree.CharDev
		if hdr.Typeflag == tar.TypeBlock {
			m.Kind = fstree.BlockDev
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor > math.MaxUint32 {
			return nil, fmt.Errorf("%s: device number %d:%d out of range", p, hdr.Devmajor, hdr.Devminor)
		}
		m.Rdev = makedev(hdr.Devmajor, hdr.Devminor)
	case tar.TypeFifo:
		m.Kind = fstree.Fifo
	default:
		return nil, fmt.Errorf("%s: unsupported tar member type %q", p, hdr.Typeflag)
	}
	if p == "/" && !m.Dir {
		return nil, fmt.Errorf("the root entry %q is not a directory", hdr.Name)
	}
	return m, nil
}
