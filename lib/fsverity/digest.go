package fsverity

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// readBufferSize is large enough that read syscalls cost little next to
// hashing, small enough that the kernel copies into a buffer that stays in
// the CPU cache (256 KiB measured ~5% faster than 1 MiB on a warm 1 GiB
// file), and a multiple of BlockSize so that every Write after a full read
// is aligned and hashed in place.
const readBufferSize = 256 << 10

// readBuffers lets the many small files of an image import share a few read
// buffers instead of allocating one per file.
var readBuffers = sync.Pool{New: func() any { return new([readBufferSize]byte) }}

// ReadFrom hashes everything r yields until EOF. It lets io.Copy(h, r) read
// in large, block-aligned chunks.
func (h *Hasher) ReadFrom(r io.Reader) (int64, error) {
	buf := readBuffers.Get().(*[readBufferSize]byte)
	defer readBuffers.Put(buf)
	var total int64
	for {
		// Fill the buffer as far as the reader allows so that writes stay
		// block-aligned even when a reader returns odd-sized short reads.
		n, err := io.ReadFull(r, buf[:])
		if n > 0 {
			h.Write(buf[:n])
			total += int64(n)
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return total, nil
		default:
			return total, err
		}
	}
}

// Digest returns the fs-verity digest of everything r yields until EOF.
func Digest(r io.Reader, alg Algorithm) ([]byte, error) {
	if !alg.valid() {
		return nil, fmt.Errorf("fs-verity digest: invalid %v", alg)
	}
	h := New(alg)
	if _, err := h.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("fs-verity digest: %w", err)
	}
	return h.Sum(nil), nil
}

// DigestFile returns the fs-verity digest of the file at path, computed in
// userspace, so it works on any filesystem and kernel (unlike Measure).
func DigestFile(path string, alg Algorithm) ([]byte, error) {
	if !alg.valid() {
		return nil, fmt.Errorf("fs-verity digest of %s: invalid %v", path, alg)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fs-verity digest: %w", err)
	}
	defer f.Close()
	h := New(alg)
	if _, err := h.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("fs-verity digest: %w", err) // *os.PathError names the file
	}
	return h.Sum(nil), nil
}
