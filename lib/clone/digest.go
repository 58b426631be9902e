package clone

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// openSource opens e's src and checks it is a regular file of the size the
// entry claims, so a wrong src fails before anything is cloned from it.
func openSource(e *stream.Entry) (*os.File, error) {
	if e.Src == "" {
		return nil, fmt.Errorf("%s: no src to clone from (the object list must name where the bytes are)", e.Path)
	}
	f, err := os.OpenFile(e.Src, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: src: %w", e.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: src: %w", e.Path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: src %s is not a regular file", e.Path, e.Src)
	}
	if st.Size() != e.Size {
		f.Close()
		return nil, fmt.Errorf("%s: src %s has %d bytes, the entry says %d", e.Path, e.Src, st.Size(), e.Size)
	}
	return f, nil
}

// digestSource reads src once, computing the ostree content checksum the
// object will have and the fs-verity digest that proves the bytes are the
// composefs object the entry names. A src whose bytes do not match is
// refused: the object id is the only thing tying src to the image.
func digestSource(e *stream.Entry, meta ostree.FileMeta, src *os.File) (string, error) {
	var verity *fsverity.Hasher
	var body io.Reader = io.NewSectionReader(src, 0, e.Size)
	switch len(e.Composefs) {
	case 0:
		// No composefs id to check against (a list not made by cfs-pull);
		// the ostree checksum below still names exactly these bytes.
	case 2 * fsverity.SHA256.Size():
		verity = fsverity.New(fsverity.SHA256)
	case 2 * fsverity.SHA512.Size():
		verity = fsverity.New(fsverity.SHA512)
	default:
		return "", fmt.Errorf("%s: composefs id %q has an unknown length", e.Path, e.Composefs)
	}
	if verity != nil {
		body = io.TeeReader(body, verity)
	}
	sum, err := ostree.FileChecksum(meta, body)
	if err != nil {
		return "", fmt.Errorf("%s: reading src %s: %w", e.Path, e.Src, err)
	}
	if verity != nil {
		if got := hex.EncodeToString(verity.Sum(nil)); got != e.Composefs {
			return "", fmt.Errorf("%s: src %s has fs-verity digest %s, but the entry's composefs id is %s", e.Path, e.Src, got, e.Composefs)
		}
	}
	return sum, nil
}
