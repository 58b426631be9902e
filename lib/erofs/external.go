package erofs

// ForEachExternal calls fn once for every inode of the image that is an
// external regular file, with its object path inside the objects dir
// ("XX/rest", as Node.Payload) and its size. A hardlinked inode is
// reported once. The set of (object, size) pairs is the one a walk of
// Read's tree over the canonical nodes gives, but no tree is built: the
// directories are walked from the root and each inode is decoded and
// dropped, so memory stays at a bitmap of visited inodes and the queue of
// directories, where Read keeps every node with its xattrs (about 100 MB
// for 100k entries).
//
// The checks on what the walk reads are Read's: header, superblock,
// inodes, xattrs, directory blocks and names, a directory with two names,
// directory data beyond the image's size. What it does not read (inline
// file and symlink data, the order and uniqueness of names in a
// directory) it does not check. An error from fn stops the walk and is
// returned as is.
func ForEachExternal(data []byte, fn func(object string, size int64) error) error {
	r, rootNid, err := open(data)
	if err != nil {
		return err
	}
	r.noCache = true
	root, err := r.inode(rootNid)
	if err != nil {
		return err
	}
	if root.mode&TypeMask != TypeDir {
		return formatErr("root inode is not a directory")
	}
	// inode() rejects a nid above len(data)/slotSize, so the bitmap
	// covers every nid the walk can reach.
	seen := make([]uint64, uint64(len(data))/slotSize/64+1)
	mark := func(nid uint64) bool {
		w, b := nid/64, uint64(1)<<(nid%64)
		was := seen[w]&b != 0
		seen[w] |= b
		return was
	}
	mark(rootNid)
	dirs := []*rawInode{root}
	for len(dirs) > 0 {
		d := dirs[0]
		dirs = dirs[1:]
		ents, err := r.dirents(d)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.name == "." || e.name == ".." {
				continue
			}
			if err := ValidName(e.name); err != nil {
				return formatErr("directory entry: %v", err)
			}
			if e.nid > uint64(len(r.data))/slotSize {
				return formatErr("nid %d is outside the image", e.nid)
			}
			if mark(e.nid) {
				// A directory is decoded once; another name for it is
				// Read's error, another name for a file a hardlink.
				in, err := r.inode(e.nid)
				if err != nil {
					return err
				}
				if in.mode&TypeMask == TypeDir {
					return formatErr("directory inode %d has more than one name", e.nid)
				}
				continue
			}
			in, err := r.inode(e.nid)
			if err != nil {
				return err
			}
			if in.mode&TypeMask == TypeDir {
				dirs = append(dirs, in)
				continue
			}
			if obj, ok := externalObject(in); ok {
				if err := fn(obj, int64(in.size)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// externalObject is the object path node() gives a regular inode as its
// Payload: the overlay redirect of a chunk-based file that is not an
// escaped whiteout.
func externalObject(in *rawInode) (string, bool) {
	if in.mode&TypeMask != TypeRegular || in.layout != layoutChunkBased {
		return "", false
	}
	var redirect []byte
	for _, x := range in.xattrs {
		switch x.Name {
		case xattrEscWhiteout:
			if in.size == 0 {
				return "", false
			}
		case xattrRedirect:
			if redirect == nil {
				redirect = x.Value
			}
		}
	}
	if len(redirect) > 1 && redirect[0] == '/' {
		return string(redirect[1:]), true
	}
	return "", false
}
