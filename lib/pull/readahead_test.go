package pull

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
	"time"
)

// errAfter yields data in uneven reads, then err.
type errAfter struct {
	data   []byte
	err    error
	rng    *rand.Rand
	closed bool
}

func (e *errAfter) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := min(len(p), 1+e.rng.Intn(300<<10), len(e.data))
	copy(p, e.data[:n])
	e.data = e.data[n:]
	return n, nil
}

func (e *errAfter) Close() error { e.closed = true; return nil }

// TestReadAheadOrderAndError: every byte arrives in order, and the
// source's error (a digest mismatch at the end of a blob) comes after
// them, not instead of them.
func TestReadAheadOrderAndError(t *testing.T) {
	data := make([]byte, 5*readAheadBlock+12345)
	rand.New(rand.NewSource(1)).Read(data)
	for _, srcErr := range []error{io.EOF, ErrDigestMismatch} {
		src := &errAfter{data: data, err: srcErr, rng: rand.New(rand.NewSource(2))}
		ra := newReadAhead(src)
		var got bytes.Buffer
		buf := make([]byte, 7000)
		var err error
		for {
			var n int
			n, err = ra.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("%v: got %d bytes, not the %d of the source", srcErr, got.Len(), len(data))
		}
		if !errors.Is(err, srcErr) {
			t.Fatalf("error %v, want %v", err, srcErr)
		}
		if err := ra.Close(); err != nil || !src.closed {
			t.Fatalf("Close: %v, source closed %v", err, src.closed)
		}
	}
}

// TestReadAheadCloseEndsBlockedRead: Close returns while the goroutine
// waits in a read the source never answers, by closing the source.
func TestReadAheadCloseEndsBlockedRead(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ra := newReadAhead(pr)
	done := make(chan struct{})
	go func() {
		ra.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a read that never ends")
	}
	if _, err := ra.Read(make([]byte, 10)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}
