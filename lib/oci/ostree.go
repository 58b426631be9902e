package oci

import (
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/ostreeimport"
	"github.com/cfs-project/cfs/lib/stream"
)

// ostreePrefix is what the ostree content checksum of the file object
// `cfs-clone --to ostree` makes from a regular member hashes before its
// bytes (ostree.ContentPrefix), for the metadata the object list gives
// the member's entry: its owner and mode, and the xattrs BuildTree keeps
// (TransformForOCI), through ostreeimport.FileMeta as the clone does. The
// body's object records the checksum for that prefix (composefs content
// records) in the pass that computes its fs-verity digest, and the clone
// names the object by it without reading the bytes. An image relabelled
// from its own SELinux policy after the pull gives its entries other
// xattrs: the clone finds no record for them and reads the bytes. nil
// when the metadata cannot be an ostree header.
func ostreePrefix(m *Member) []byte {
	var xattrs map[string][]byte
	for name, v := range m.Stat.Xattrs {
		if AllowlistOnly.keeps(name) {
			if xattrs == nil {
				xattrs = make(map[string][]byte)
			}
			xattrs[name] = v
		}
	}
	e := stream.Entry{Type: stream.TypeFile, Mode: m.Stat.Mode & 0o7777, UID: m.Stat.UID, GID: m.Stat.GID, Xattrs: xattrs}
	prefix, err := ostree.ContentPrefix(ostreeimport.FileMeta(&e))
	if err != nil {
		return nil
	}
	return prefix
}
