package cstorage

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/reflink"
)

// countingPrep readies each body as a private read-only descriptor of the
// diff file and counts what the prefetcher did with the tokens.
type countingPrep struct {
	started, verified, dropped atomic.Int64
}

type prepToken struct {
	f   *os.File
	sum interface{ Sum([]byte) []byte }
}

func (c *countingPrep) prep() BodyPrep {
	return BodyPrep{
		Start: func(diff *os.File, _ int64) (*os.File, io.Writer, any, error) {
			fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(diff.Fd())), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, nil, nil, err
			}
			c.started.Add(1)
			h := sha256.New()
			f := os.NewFile(uintptr(fd), diff.Name())
			return f, h, &prepToken{f: f, sum: h}, nil
		},
		Verified: func(token any) error {
			c.verified.Add(1)
			return token.(*prepToken).f.Close()
		},
		Drop: func(token any) {
			c.dropped.Add(1)
			token.(*prepToken).f.Close()
		},
	}
}

// TestPrefetch: a layer read with its bodies prefetched is the layer's tar
// byte for byte, every body is verified before NextPrepared hands it out
// and its sink saw exactly its bytes; a reader that stops early leaves no
// token unaccounted for and no descriptor open; and a body that no longer
// matches its CRC64 fails the member that carries it.
func TestPrefetch(t *testing.T) {
	testfs.RequirePrivileged(t)
	fs := testfs.XFS(t, 0)
	src := fs.Path("src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fs.Path("store"), fs.Path("run"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	members := []member{{name: "usr/", typ: tar.TypeDir}}
	for i := range 40 {
		body := strings.Repeat(fmt.Sprintf("%03d", i), 100+i*50)
		switch {
		case i%7 == 3:
			body = body[:40] // inline, not prefetched
		case i%5 == 4:
			// Past memBodyMax, at it, and one over: handed to the reader
			// as a file rather than as bytes.
			body = strings.Repeat(body, memBodyMax/len(body)+2)
			if i == 9 {
				body = body[:memBodyMax]
			} else if i == 14 {
				body = body[:memBodyMax+1]
			}
		}
		members = append(members, member{name: fmt.Sprintf("usr/f%02d", i), typ: tar.TypeReg, body: body})
	}
	diffID, chunks := layerOf(t, src, members)
	n := &NewImage{DiffIDs: []string{diffID}, Policy: reflink.Always, Layer: func(int) (ChunkReader, error) { return chunks(), nil }}
	if _, _, err := s.WriteLayers(n); err != nil {
		t.Fatal(err)
	}
	img := &Image{Layers: []Layer{{ID: n.LayerIDs()[0], DiffID: diffID, TarSplit: true}}}
	fds := testfs.OpenFDs(t)

	// read goes through the layer's tar, taking each body over 64 bytes
	// with NextPrepared, for at most stop members (-1: all).
	read := func(c *countingPrep, stop int) (string, error) {
		lt, err := s.OpenLayer(img, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		lt.Prefetch(64, 3, 4, c.prep())
		whole := sha256.New()
		tr := tar.NewReader(io.TeeReader(lt, whole))
		for i := 0; stop < 0 || i < stop; i++ {
			hdr, err := tr.Next()
			if err == io.EOF {
				io.Copy(whole, lt)
				return "sha256:" + hex.EncodeToString(whole.Sum(nil)), nil
			}
			if err != nil {
				return "", err
			}
			if hdr.Typeflag == tar.TypeReg && hdr.Size > 64 {
				token, err := lt.NextPrepared(path.Clean("/"+hdr.Name), hdr.Size)
				if err != nil {
					return "", err
				}
				body := sha256.New()
				if _, err := io.Copy(body, tr); err != nil {
					return "", err
				}
				pt := token.(*prepToken)
				if string(pt.sum.Sum(nil)) != string(body.Sum(nil)) {
					t.Errorf("%s: the sink saw other bytes than the tar carries", hdr.Name)
				}
			}
		}
		return "", nil
	}

	var c countingPrep
	got, err := read(&c, -1)
	if err != nil || got != diffID {
		t.Fatalf("prefetched layer: %s, %v; want %s", got, err, diffID)
	}
	if c.started.Load() != 34 || c.verified.Load() != 34 || c.dropped.Load() != 0 {
		t.Errorf("started %d, verified %d, dropped %d; want 34, 34, 0", c.started.Load(), c.verified.Load(), c.dropped.Load())
	}

	for _, stop := range []int{0, 1, 3, 20} {
		var c countingPrep
		if _, err := read(&c, stop); err != nil {
			t.Fatal(err)
		}
		if c.started.Load() != c.verified.Load()+c.dropped.Load() {
			t.Errorf("stopped after %d members: started %d, verified %d, dropped %d", stop, c.started.Load(), c.verified.Load(), c.dropped.Load())
		}
	}
	if got := testfs.OpenFDs(t); got != fds {
		t.Errorf("%d descriptors open after the reads, %d before", got, fds)
	}

	// A diff file edited after the layer was stored: a body read into
	// memory, and one past memBodyMax.
	for _, name := range []string{"f20", "f29"} {
		p := fs.Path("store", "overlay", img.Layers[0].ID, "diff", "usr", name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[10] ^= 1
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c = countingPrep{}
		_, err = read(&c, -1)
		if err == nil || !strings.Contains(err.Error(), "CRC64") || !strings.Contains(err.Error(), "usr/"+name) {
			t.Fatalf("edited body %s: %v", name, err)
		}
		if c.started.Load() != c.verified.Load()+c.dropped.Load() || c.dropped.Load() == 0 {
			t.Errorf("edited body %s: started %d, verified %d, dropped %d (%v)", name, c.started.Load(), c.verified.Load(), c.dropped.Load(), err)
		}
		if got := testfs.OpenFDs(t); got != fds {
			t.Errorf("%d descriptors open after the reads, %d before", got, fds)
		}
		data[10] ^= 1
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
