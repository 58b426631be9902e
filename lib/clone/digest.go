package clone

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// openSource opens e's src and checks it is a regular file of the size the
// entry claims, so a wrong src fails before anything is cloned from it.
func openSource(e *stream.Entry) (*os.File, *unix.Stat_t, error) {
	if e.Src == "" {
		return nil, nil, fmt.Errorf("%s: no src to clone from (the object list must name where the bytes are)", e.Path)
	}
	fd, err := unix.Open(e.Src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: src: %w", e.Path, &os.PathError{Op: "open", Path: e.Src, Err: err})
	}
	// os.NewFile, unlike os.Open, does not try to register a regular
	// file with the poller: one system call less per file.
	f := os.NewFile(uintptr(fd), e.Src)
	st := new(unix.Stat_t)
	if err := unix.Fstat(fd, st); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: src: %w", e.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, nil, fmt.Errorf("%s: src %s is not a regular file", e.Path, e.Src)
	}
	if st.Size != e.Size {
		f.Close()
		return nil, nil, fmt.Errorf("%s: src %s has %d bytes, the entry says %d", e.Path, e.Src, st.Size, e.Size)
	}
	return f, st, nil
}

// trustedRepository returns the composefs repository the image record
// names if its objects may be taken as what their names say without
// hashing them again: an absolute path to a real directory (not a
// symlink) holding meta.json, owned by us and writable by no one else.
// cfs-pull named each object there after computing its fs-verity digest
// from the bytes it wrote and syncing them; anyone who could change them
// since could as well change the ostree repository or the list itself.
// "" when the repository does not qualify (every src is then hashed).
func trustedRepository(img *stream.Image) string {
	if img.Stores.Composefs == nil {
		return ""
	}
	repo := img.Stores.Composefs.Repo
	if repo == "" || !filepath.IsAbs(repo) || filepath.Clean(repo) != repo {
		return ""
	}
	var st unix.Stat_t
	if err := unix.Lstat(repo, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR ||
		st.Uid != uint32(os.Geteuid()) || st.Mode&0o022 != 0 {
		return ""
	}
	if err := unix.Lstat(filepath.Join(repo, "meta.json"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ""
	}
	return repo
}

// noVerity remembers the filesystems (st_dev) where FS_IOC_MEASURE_VERITY
// is not available, so that their files cost no failing ioctl each.
var noVerity sync.Map

// verifier ties the bytes of a cloned object to the entry's composefs id,
// the only thing that says src holds the image's file. A src that is the
// object a trusted composefs repository (trustedRepository) holds under
// that very id is taken as it: its name is the digest cfs-pull computed
// from its bytes. Where the kernel
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
	// own says src is the trusted repository's object under the entry's
	// id: its content records (recorded) are as trusted as its name.
	own bool
}

// verityMismatch is the error of a src that is not the entry's object.
type verityMismatch struct {
	e        *stream.Entry
	src, got string
}

func (m *verityMismatch) Error() string {
	return fmt.Sprintf("%s: src %s has fs-verity digest %s, but the entry's composefs id is %s", m.e.Path, m.src, m.got, m.e.Composefs)
}

func newVerifier(e *stream.Entry, src *os.File, st *unix.Stat_t, trustedRepo string) (*verifier, error) {
	v := &verifier{e: e, src: e.Src}
	// The object the trusted repository holds under the entry's own id.
	v.own = trustedRepo != "" && len(e.Composefs) > 2 && e.Src == filepath.Join(trustedRepo, "objects", e.Composefs[:2], e.Composefs[2:])
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
	if _, unavailable := noVerity.Load(st.Dev); !unavailable {
		kalg, digest, err := fsverity.Measure(src)
		switch {
		case err == nil:
			if got := hex.EncodeToString(digest); kalg != alg || got != e.Composefs {
				return nil, &verityMismatch{e: e, src: e.Src, got: got}
			}
			v.measured = src
			return v, nil
		case errors.Is(err, fsverity.ErrUnavailable):
			noVerity.Store(st.Dev, true)
		}
	}
	if v.own {
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

// recorded returns the ostree checksum that cfs-pull recorded with the
// trusted repository's object for exactly this header (composefs content
// records, keyed by ostree.ContentPrefix), or "" when src is anything
// else or has no record for it: the bytes are then read as before. A
// record is as trustworthy as the object's name: cfs-pull computed both
// from the same bytes in one pass, and only root can set either.
func (v *verifier) recorded(src *os.File, meta ostree.FileMeta) (string, error) {
	if !v.own {
		return "", nil
	}
	rs, err := composefs.ReadRecords(src)
	if err != nil || rs == nil {
		return "", err
	}
	prefix, err := ostree.ContentPrefix(meta)
	if err != nil {
		return "", err
	}
	sum, ok := composefs.Lookup(rs, prefix)
	if !ok {
		return "", nil
	}
	return hex.EncodeToString(sum[:]), nil
}
