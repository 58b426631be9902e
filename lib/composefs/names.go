package composefs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/beneath"
	"github.com/cfs-project/cfs/lib/fsverity"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// symlink makes name point at target, both relative to the repository
// root, with the relative link text composefs-rs computes (one ".." per
// directory of name not shared with target). An existing link with the
// same text is kept; one with other text is replaced atomically.
func (r *Repository) symlink(name, target string) error {
	nameDir := strings.Split(filepath.Dir(name), "/")
	targetParts := strings.Split(target, "/")
	common := 0
	for common < len(nameDir) && common < len(targetParts)-1 && nameDir[common] == targetParts[common] {
		common++
	}
	var text []string
	for range nameDir[common:] {
		text = append(text, "..")
	}
	text = append(text, targetParts[common:]...)
	link := strings.Join(text, "/")

	dirfd, err := beneath.MkdirAll(int(r.dir.Fd()), filepath.Dir(name), 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	base := filepath.Base(name)
	err = unix.Symlinkat(link, dirfd, base)
	if err == nil || !errors.Is(err, unix.EEXIST) {
		return err
	}
	buf := make([]byte, unix.PathMax)
	if n, rerr := unix.Readlinkat(dirfd, base, buf); rerr == nil && string(buf[:n]) == link {
		return nil
	}
	// Another link text, or something planted there: replace it with
	// rename, which never follows what it replaces.
	tmp := ".symlink-" + randomName(12)
	if err := unix.Symlinkat(link, dirfd, tmp); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, base); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return nil
}

// linkedObject reads a symlink made by symlink and returns the object id
// named by its last two components, as composefs-rs's has_stream does.
func (r *Repository) linkedObject(name string) ([]byte, error) {
	text, err := os.Readlink(filepath.Join(r.path, name))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(text, "../") {
		return nil, fmt.Errorf("%s: link %q does not start with ../", name, text)
	}
	dir, rest := filepath.Split(text)
	xx := filepath.Base(dir)
	id, err := r.ParseID(xx + rest)
	if err != nil || len(xx) != 2 {
		return nil, fmt.Errorf("%s: link %q does not name an object", name, text)
	}
	return id, nil
}

// WriteStream stores a finished splitstream under streams/<contentID>.
// The pending objects are flushed first (made durable, then named), so
// the stream's name never refers to objects a crash could lose.
func (r *Repository) WriteStream(contentID string, w *splitstream.Writer) ([]byte, error) {
	if err := checkContentID(contentID); err != nil {
		return nil, err
	}
	data, err := w.Finish()
	if err != nil {
		return nil, err
	}
	id, err := r.EnsureObject(data)
	if err != nil {
		return nil, err
	}
	if err := r.Flush(); err != nil {
		return nil, err
	}
	if err := r.symlink("streams/"+contentID, "objects/"+ObjectName(id)); err != nil {
		return nil, fmt.Errorf("naming stream %s: %w", contentID, err)
	}
	return id, nil
}

// StreamID returns the object id of streams/<contentID>, and false if the
// stream does not exist or its object is gone.
func (r *Repository) StreamID(contentID string) ([]byte, bool, error) {
	if err := checkContentID(contentID); err != nil {
		return nil, false, err
	}
	id, err := r.linkedObject("streams/" + contentID)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return id, r.HasObject(id), nil
}

// OpenStream parses streams/<contentID>, checking its content type.
func (r *Repository) OpenStream(contentID string, contentType uint64) (*splitstream.Reader, []byte, error) {
	id, ok, err := r.StreamID(contentID)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("stream %s: %w", contentID, os.ErrNotExist)
	}
	f, err := r.OpenObject(id)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", contentID, err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", contentID, err)
	}
	// A stream is read whole anyway; its digest is cheap next to that,
	// and a stream object a crash damaged must not be trusted.
	if got, _ := fsverity.Digest(bytes.NewReader(data), r.alg); !bytes.Equal(got, id) {
		return nil, nil, fmt.Errorf("stream %s: object %s is damaged (its bytes have digest %x)", contentID, r.ObjectPath(id), got)
	}
	sr, err := splitstream.NewReader(data, uint8(r.alg))
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s (object %x): %w", contentID, id, err)
	}
	if sr.ContentType != contentType {
		sr.Close()
		return nil, nil, fmt.Errorf("stream %s has content type %#x, want %#x", contentID, sr.ContentType, contentType)
	}
	return sr, id, nil
}

func checkContentID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || id == "refs" {
		return fmt.Errorf("invalid stream name %q", id)
	}
	return nil
}

// WriteImage stores an EROFS image and links images/<hex> to it. The
// image is garbage for composefs-rs until a config stream names it
// (composefs.image.v1) or a ref does: write that next.
func (r *Repository) WriteImage(image []byte) ([]byte, error) {
	id, err := r.EnsureObject(image)
	if err != nil {
		return nil, err
	}
	if err := r.Flush(); err != nil {
		return nil, err
	}
	if err := r.symlink("images/"+hex.EncodeToString(id), "objects/"+ObjectName(id)); err != nil {
		return nil, fmt.Errorf("naming image %x: %w", id, err)
	}
	return id, nil
}

// WriteImageFrom is WriteImage for an image that write produces, streamed
// to disk and hashed on the way instead of held in memory: the image of a
// 100k-entry tree is tens of MiB, more than the rest of a pull keeps. The
// writing and hashing run on a goroutine of their own (imagePipe). An
// object already stored under the image's id is kept only if its own
// bytes have that digest.
func (r *Repository) WriteImageFrom(write func(io.Writer) error) ([]byte, error) {
	t, err := r.newTemp()
	if err != nil {
		return nil, err
	}
	t.written = true
	h := fsverity.Get(r.alg)
	defer fsverity.Put(h)
	p := newImagePipe(t.File, h)
	err = write(p)
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.discard()
		return nil, err
	}
	id := h.Sum(nil)
	replace := false
	if !r.isPending(id) {
		switch err := r.checkStored(id, p.n); {
		case err == nil:
			got, derr := fsverity.DigestFile(r.ObjectPath(id), r.alg)
			replace = derr != nil || !bytes.Equal(got, id)
		case !errors.Is(err, fs.ErrNotExist):
			replace = true
		}
	}
	if _, err := r.finishObject(t, id, p.n, replace); err != nil {
		return nil, fmt.Errorf("storing image %x: %w", id, err)
	}
	if err := r.Flush(); err != nil {
		return nil, err
	}
	if err := r.symlink("images/"+hex.EncodeToString(id), "objects/"+ObjectName(id)); err != nil {
		return nil, fmt.Errorf("naming image %x: %w", id, err)
	}
	return id, nil
}

// HasImage reports whether images/<hex> resolves to an object.
func (r *Repository) HasImage(id []byte) bool {
	_, err := os.Stat(filepath.Join(r.path, "images", hex.EncodeToString(id)))
	return err == nil
}

// EncodeTag escapes a tag for streams/refs/oci/ as composefs-rs does:
// "%" first, then "/".
func EncodeTag(tag string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tag, "%", "%25"), "/", "%2F")
}

// DecodeTag reverses EncodeTag.
func DecodeTag(name string) string {
	return strings.ReplaceAll(strings.ReplaceAll(name, "%2F", "/"), "%25", "%")
}

func checkTag(tag string) error {
	if tag == "" || tag[0] == '@' || strings.ContainsRune(tag, 0) {
		return fmt.Errorf("invalid tag %q", tag)
	}
	return nil
}

// ManifestContentID is the stream name of an OCI manifest.
func ManifestContentID(manifestDigest string) string { return "oci-manifest-" + manifestDigest }

// ConfigContentID is the stream name of an OCI config.
func ConfigContentID(configDigest string) string { return "oci-config-" + configDigest }

// LayerContentID is the stream name of a layer, by its diff ID.
func LayerContentID(diffID string) string { return "oci-layer-" + diffID }

// SetTag points streams/refs/oci/<tag> at the manifest stream, durably.
// Call it only after the manifest stream is written. Everything named so
// far is made durable first (syncfs), so the tag never survives a crash
// that lost a stream or object name it depends on, whatever the
// filesystem's journal orders.
func (r *Repository) SetTag(tag, manifestDigest string) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	if _, ok, err := r.StreamID(ManifestContentID(manifestDigest)); err != nil || !ok {
		return fmt.Errorf("tagging %s: manifest stream for %s is missing (%v)", tag, manifestDigest, err)
	}
	if err := r.Flush(); err != nil {
		return err
	}
	if err := r.Sync(); err != nil {
		return err
	}
	name := "streams/refs/oci/" + EncodeTag(tag)
	if err := r.symlink(name, "streams/"+ManifestContentID(manifestDigest)); err != nil {
		return fmt.Errorf("tagging %s: %w", tag, err)
	}
	dirfd, err := beneath.OpenDir(int(r.dir.Fd()), "streams/refs/oci")
	if err != nil {
		return fmt.Errorf("tagging %s: %w", tag, err)
	}
	defer unix.Close(dirfd)
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("tagging %s: fsync streams/refs/oci: %w", tag, err)
	}
	return nil
}

// ErrNoSuchTag is wrapped by ResolveTag for a tag the repository does not
// have.
var ErrNoSuchTag = errors.New("no such tag")

// ResolveTag returns the manifest digest a tag points at.
func (r *Repository) ResolveTag(tag string) (string, error) {
	if err := checkTag(tag); err != nil {
		return "", err
	}
	text, err := os.Readlink(filepath.Join(r.path, "streams/refs/oci", EncodeTag(tag)))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: %s (in %s)", ErrNoSuchTag, tag, r.path)
	}
	if err != nil {
		return "", fmt.Errorf("tag %s: %w", tag, err)
	}
	digest, ok := strings.CutPrefix(filepath.Base(text), "oci-manifest-")
	if !ok {
		return "", fmt.Errorf("tag %s points at %q, not a manifest stream", tag, text)
	}
	return digest, nil
}

// Tags lists the OCI tags in the repository, decoded.
func (r *Repository) Tags() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.path, "streams/refs/oci"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, e := range entries {
		tags = append(tags, DecodeTag(e.Name()))
	}
	return tags, nil
}
