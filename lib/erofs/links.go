package erofs

// NormalizeLinks makes the first name of every hardlinked inode, in
// dumpfile order (pre-order, children sorted), the canonical one that
// carries the inode, and points the other names at it. That is where
// composefs-rs and a dumpfile round trip put the inode; builders whose
// links may come before their targets (tar) call this before Write so the
// image is the one composefs-rs makes.
func (root *Node) NormalizeLinks() {
	first := map[*Node]*Node{} // inode node -> first name seen
	var visit func(n *Node)
	visit = func(n *Node) {
		for _, c := range n.Children {
			if c.IsDir() {
				visit(c)
				continue
			}
			ino := c.Inode()
			if _, ok := first[ino]; !ok {
				first[ino] = c
			}
		}
	}
	visit(root)
	moved := map[*Node]*Node{} // old canonical -> new canonical
	for ino, f := range first {
		if f == ino || f.LinkTo == nil {
			continue
		}
		name, parent := f.Name, f.parent
		*f = *ino
		f.Name, f.parent, f.LinkTo = name, parent, nil
		moved[ino] = f
	}
	if len(moved) == 0 {
		return
	}
	var relink func(n *Node)
	relink = func(n *Node) {
		for _, c := range n.Children {
			if c.IsDir() {
				relink(c)
				continue
			}
			if nf, ok := moved[c.Inode()]; ok && c != nf {
				c.LinkTo = nf
			}
		}
	}
	relink(root)
	for old, nf := range moved {
		old.LinkTo = nf
	}
}
