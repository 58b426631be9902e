package dumpfile

import (
	"bufio"
	"encoding/hex"
	"io"
	"strconv"
	"strings"

	"github.com/cfs-project/cfs/lib/erofs"
)

// Write writes the tree as a dumpfile in pre-order with sorted children,
// the format composefs-info dump prints. A hardlink line repeats its
// inode's fields with "@" before the mode and the canonical path as payload.
func Write(w io.Writer, root *erofs.Node) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	paths := map[*erofs.Node]string{}
	names := map[*erofs.Node]uint32{}
	_ = erofs.Walk(root, func(path string, n *erofs.Node) error {
		if n.LinkTo == nil {
			paths[n] = path
		}
		names[n.Inode()]++
		return nil
	})
	var b strings.Builder
	err := erofs.Walk(root, func(path string, n *erofs.Node) error {
		b.Reset()
		writeLine(&b, path, n, paths, names)
		_, err := bw.WriteString(b.String())
		return err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

func nlinkOf(n *erofs.Node, names map[*erofs.Node]uint32) uint32 {
	if n.Nlink != 0 {
		return n.Nlink
	}
	if n.IsDir() {
		c := uint32(2)
		for _, ch := range n.Children {
			if ch.IsDir() {
				c++
			}
		}
		return c
	}
	return names[n]
}

func writeLine(b *strings.Builder, path string, n *erofs.Node, paths map[*erofs.Node]string, names map[*erofs.Node]uint32) {
	t := n.Inode()
	escape(b, path, escapeStandard)
	size := t.Size
	if t.Mode&erofs.TypeMask == erofs.TypeSymlink {
		size = uint64(len(t.Payload))
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatUint(size, 10))
	b.WriteByte(' ')
	if n.LinkTo != nil {
		b.WriteByte('@')
	}
	b.WriteString(strconv.FormatUint(uint64(t.Mode), 8))
	for _, v := range []uint64{uint64(nlinkOf(t, names)), uint64(t.UID), uint64(t.GID), t.Rdev} {
		b.WriteByte(' ')
		b.WriteString(strconv.FormatUint(v, 10))
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(t.MtimeSec, 10))
	b.WriteByte('.')
	b.WriteString(strconv.FormatUint(uint64(t.MtimeNsec), 10))
	b.WriteByte(' ')
	switch {
	case n.LinkTo != nil:
		escape(b, paths[t], escapeLoneDash)
	case t.Payload != "":
		escape(b, t.Payload, escapeLoneDash)
	default:
		b.WriteByte('-')
	}
	b.WriteByte(' ')
	if len(t.Content) > 0 {
		escape(b, string(t.Content), escapeLoneDash)
	} else {
		b.WriteByte('-')
	}
	b.WriteByte(' ')
	if len(t.Digest) > 0 {
		b.WriteString(hex.EncodeToString(t.Digest))
	} else {
		b.WriteByte('-')
	}
	for _, x := range t.Xattrs {
		b.WriteByte(' ')
		escape(b, x.Name, escapeEqual)
		b.WriteByte('=')
		escape(b, string(x.Value), escapeEqual)
	}
	b.WriteByte('\n')
}
