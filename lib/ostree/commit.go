package ostree

import "fmt"

// WriteCommit stores a commit object after checking that its root tree and
// meta are present (a commit is written only once what it points to is),
// and returns its checksum. It does not move any ref: call SetRef after.
func (r *Repo) WriteCommit(c Commit) (string, error) {
	for _, o := range []struct {
		csum string
		typ  ObjectType
	}{{c.RootTree, ObjectDirTree}, {c.RootMeta, ObjectDirMeta}} {
		if !ValidChecksum(o.csum) {
			return "", fmt.Errorf("commit: invalid root %s checksum %q", o.typ, o.csum)
		}
		have, err := r.HasObject(o.csum, o.typ)
		if err != nil {
			return "", err
		}
		if !have {
			return "", fmt.Errorf("commit: root %s.%s is not in %s", o.csum, o.typ, r.path)
		}
	}
	b, err := c.Bytes()
	if err != nil {
		return "", err
	}
	return r.writeMetadataObject(ObjectCommit, b)
}

// ReadCommit loads and parses a .commit object.
func (r *Repo) ReadCommit(checksum string) (Commit, error) {
	b, err := r.ReadMetadataObject(checksum, ObjectCommit)
	if err != nil {
		return Commit{}, err
	}
	return ParseCommit(b)
}
