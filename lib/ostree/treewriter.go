package ostree

import "fmt"

// DirRef names a written directory: its .dirtree and .dirmeta.
type DirRef struct {
	Tree string
	Meta string
}

// TreeWriter turns a pre-order walk (a directory, then its entries, with
// each directory closed when the walk leaves it) into dirtree and dirmeta
// objects, bottom-up. It keeps only the directories currently open, so
// memory grows with depth times width, not with the size of the tree.
// Entry order within a directory does not matter; ostree's order is made
// when each directory is written.
type TreeWriter struct {
	repo  *Repo
	stack []*openDir
	root  *DirRef
}

type openDir struct {
	name string
	meta DirMeta
	tree DirTree
}

// NewTreeWriter starts an empty tree; the first EnterDir opens the root.
func (r *Repo) NewTreeWriter() *TreeWriter {
	return &TreeWriter{repo: r}
}

// Depth is the number of open directories (1 while inside the root only).
func (w *TreeWriter) Depth() int { return len(w.stack) }

// EnterDir opens a directory: the root when nothing is open (name is then
// ignored), otherwise a child of the innermost open directory.
func (w *TreeWriter) EnterDir(name string, meta DirMeta) error {
	if w.root != nil {
		return fmt.Errorf("tree writer: root already finished")
	}
	if len(w.stack) > 0 {
		if err := ValidateFilename(name); err != nil {
			return fmt.Errorf("directory %s: %w", w.pathOf(name), err)
		}
	} else {
		name = ""
	}
	w.stack = append(w.stack, &openDir{name: name, meta: meta})
	return nil
}

// AddFile adds a regular file or symlink (by its content checksum) to the
// innermost open directory.
func (w *TreeWriter) AddFile(name, checksum string) error {
	if len(w.stack) == 0 {
		return fmt.Errorf("tree writer: AddFile %q with no open directory", name)
	}
	if err := ValidateFilename(name); err != nil {
		return fmt.Errorf("file %s: %w", w.pathOf(name), err)
	}
	if !ValidChecksum(checksum) {
		return fmt.Errorf("file %s: invalid checksum %q", w.pathOf(name), checksum)
	}
	top := w.stack[len(w.stack)-1]
	top.tree.Files = append(top.tree.Files, DirTreeFile{Name: name, Checksum: checksum})
	return nil
}

// AddDir adds an already written subdirectory to the innermost open one.
func (w *TreeWriter) AddDir(name string, ref DirRef) error {
	if len(w.stack) == 0 {
		return fmt.Errorf("tree writer: AddDir %q with no open directory", name)
	}
	if err := ValidateFilename(name); err != nil {
		return fmt.Errorf("directory %s: %w", w.pathOf(name), err)
	}
	if !ValidChecksum(ref.Tree) || !ValidChecksum(ref.Meta) {
		return fmt.Errorf("directory %s: invalid checksums %q/%q", w.pathOf(name), ref.Tree, ref.Meta)
	}
	top := w.stack[len(w.stack)-1]
	top.tree.Dirs = append(top.tree.Dirs, DirTreeDir{Name: name, TreeChecksum: ref.Tree, MetaChecksum: ref.Meta})
	return nil
}

// LeaveDir writes the innermost open directory's dirmeta and dirtree, adds
// it to its parent, and returns its checksums. Leaving the root finishes
// the tree; its DirRef is what a commit needs.
func (w *TreeWriter) LeaveDir() (DirRef, error) {
	if len(w.stack) == 0 {
		return DirRef{}, fmt.Errorf("tree writer: LeaveDir with no open directory")
	}
	path := w.pathOf("")
	top := w.stack[len(w.stack)-1]
	meta, err := w.repo.WriteDirMeta(top.meta)
	if err != nil {
		return DirRef{}, fmt.Errorf("directory %s: %w", path, err)
	}
	tree, err := w.repo.WriteDirTree(top.tree)
	if err != nil {
		return DirRef{}, fmt.Errorf("directory %s: %w", path, err)
	}
	ref := DirRef{Tree: tree, Meta: meta}
	w.stack = w.stack[:len(w.stack)-1]
	if len(w.stack) == 0 {
		w.root = &ref
		return ref, nil
	}
	parent := w.stack[len(w.stack)-1]
	parent.tree.Dirs = append(parent.tree.Dirs, DirTreeDir{Name: top.name, TreeChecksum: tree, MetaChecksum: meta})
	return ref, nil
}

// Root returns the finished root, once the root has been left.
func (w *TreeWriter) Root() (DirRef, bool) {
	if w.root == nil {
		return DirRef{}, false
	}
	return *w.root, true
}

// pathOf renders the path of name inside the innermost open directory, for
// error messages.
func (w *TreeWriter) pathOf(name string) string {
	p := ""
	for _, d := range w.stack {
		if d.name != "" {
			p += "/" + d.name
		}
	}
	if name != "" {
		p += "/" + name
	}
	if p == "" {
		return "/"
	}
	return p
}
