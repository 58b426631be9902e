package clone

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/fsverity"
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

// verifier ties the bytes of a cloned object to the entry's composefs id,
// the only thing that says src holds the image's file. Where the kernel
// measured src (fs-verity on), its measurement is the proof and the bytes
// need no hashing: the kernel refuses to read bytes that do not match it,
// and FICLONE shares exactly the extents it measured. Elsewhere the
// digest is computed over the clone's bytes during the one read that
// gives the ostree checksum (FileObjectOptions.Content), so each byte is
// read once and hashed twice. An entry without a composefs id (a list not
// made by cfs-pull) is not checked: its ostree checksum still names
// exactly the bytes stored.
type verifier struct {
	e      *stream.Entry
	src    string
	hasher *fsverity.Hasher // nil when there is nothing to hash
	// measured is src when the kernel measured it: the object's bytes are
	// read from it, where every read is checked against the measurement.
	measured *os.File
}

// verityMismatch is the error of a src that is not the entry's object.
type verityMismatch struct {
	e        *stream.Entry
	src, got string
}

func (m *verityMismatch) Error() string {
	return fmt.Sprintf("%s: src %s has fs-verity digest %s, but the entry's composefs id is %s", m.e.Path, m.src, m.got, m.e.Composefs)
}

func newVerifier(e *stream.Entry, src *os.File) (*verifier, error) {
	v := &verifier{e: e, src: e.Src}
	var alg fsverity.Algorithm
	switch len(e.Composefs) {
	case 0:
		return v, nil
	case 2 * fsverity.SHA256.Size():
		alg = fsverity.SHA256
	case 2 * fsverity.SHA512.Size():
		alg = fsverity.SHA512
	default:
		return nil, fmt.Errorf("%s: composefs id %q has an unknown length", e.Path, e.Composefs)
	}
	if kalg, digest, err := fsverity.Measure(src); err == nil {
		if got := hex.EncodeToString(digest); kalg != alg || got != e.Composefs {
			return nil, &verityMismatch{e: e, src: e.Src, got: got}
		}
		v.measured = src
		return v, nil
	}
	v.hasher = fsverity.New(alg)
	return v, nil
}

// content is where the object's bytes go as they are read, or nil.
func (v *verifier) content() io.Writer {
	if v.hasher == nil {
		return nil
	}
	return v.hasher
}

func (v *verifier) verify() error {
	if v.hasher == nil {
		return nil
	}
	if got := hex.EncodeToString(v.hasher.Sum(nil)); got != v.e.Composefs {
		return &verityMismatch{e: v.e, src: v.src, got: got}
	}
	return nil
}
