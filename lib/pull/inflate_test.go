package pull

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fsverity"
)

// layerTar is a small layer with bodies above and below the inline limit;
// random bytes make its gzip stream long enough to have several blocks.
func layerTar(t *testing.T, seed int64, big int) []byte {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	add := func(name string, body []byte) {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1, 0), Typeflag: tar.TypeReg}
		if body == nil {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		w.Write(body)
	}
	add("usr/", nil)
	add("usr/small", []byte("small body\n"))
	b := make([]byte, big)
	rng.Read(b)
	add("usr/random", b)
	text := bytes.Repeat([]byte("compressible line of text\n"), big/26)
	add("usr/text", text)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t *testing.T, data []byte, hdr gzip.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	w.Header = hdr
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withHeaderCRC rewrites a plain gzip member (no optional fields) to
// carry the header CRC (FHCRC), correct or not.
func withHeaderCRC(member []byte, correct bool) []byte {
	hdr := append([]byte(nil), member[:10]...)
	hdr[3] |= 0x02
	crc := uint16(crc32.ChecksumIEEE(hdr))
	if !correct {
		crc ^= 0x5555
	}
	out := append(hdr, byte(crc), byte(crc>>8))
	return append(out, member[10:]...)
}

// gzipLayout writes an OCI layout of one gzip layer: blob, whatever its
// bytes, for the tar whose digest is diffID.
func gzipLayout(t *testing.T, blob []byte, diffID digest.Digest) string {
	t.Helper()
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte, mediaType string) v1.Descriptor {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
	}
	layer := put(blob, v1.MediaTypeImageLayerGzip)
	cfg, _ := json.Marshal(v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}})
	man, _ := json.Marshal(v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: put(cfg, v1.MediaTypeImageConfig), Layers: []v1.Descriptor{layer}})
	mdesc := put(man, v1.MediaTypeImageManifest)
	mdesc.Annotations = map[string]string{v1.AnnotationRefName: "latest"}
	idx, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{mdesc}})
	os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir
}

// pullWith pulls the layout into a new repository with a decompressor.
func pullWith(t *testing.T, ctx context.Context, layout string, opts Options) (*Result, error) {
	t.Helper()
	return pullInto(t, ctx, newRepo(t), layout, opts)
}

func pullInto(t *testing.T, ctx context.Context, repo *composefs.Repository, layout string, opts Options) (*Result, error) {
	t.Helper()
	sys := &types.SystemContext{}
	policy, err := PolicyContext(sys, true)
	if err != nil {
		t.Fatal(err)
	}
	defer policy.Destroy()
	src, err := Open(context.Background(), "oci:"+layout+":latest", sys, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return ToComposefs(ctx, repo, src, opts)
}

// inflaters are the external programs on this machine; igzip is what CI
// installs (Makefile DEB_PACKAGES), pigz the fallback auto looks for.
func inflaters(t *testing.T) []string {
	var progs []string
	for _, name := range autoInflaters {
		if p, err := exec.LookPath(name); err == nil {
			progs = append(progs, p)
		}
	}
	if len(progs) == 0 {
		t.Skip("neither igzip nor pigz is installed (run `make deps`)")
	}
	return progs
}

// TestInflatersMatchBuiltin pulls gzip blobs the in-process decompressor
// accepts and blobs it refuses, with it and with each external program:
// every blob must be accepted or refused alike, an accepted one giving
// the same image, a refused one a one-line error naming the blob.
func TestInflatersMatchBuiltin(t *testing.T) {
	progs := inflaters(t)
	data := layerTar(t, 1, 300<<10)
	diffID := digest.FromBytes(data)
	good := gzipped(t, data, gzip.Header{})
	third := len(data) / 3
	multi := append(append(gzipped(t, data[:third], gzip.Header{}), gzipped(t, data[third:2*third], gzip.Header{})...), gzipped(t, data[2*third:], gzip.Header{})...)
	empty := gzipped(t, nil, gzip.Header{})
	flipped := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0xff
		return b
	}
	cases := []struct {
		name   string
		blob   []byte
		accept bool
	}{
		{"one member", good, true},
		{"name, comment and extra field", gzipped(t, data, gzip.Header{Name: "layer.tar", Comment: "c", Extra: []byte("xx\x02\x00ab"), ModTime: time.Unix(1e9, 0)}), true},
		{"header CRC", withHeaderCRC(good, true), true},
		{"three members", multi, true},
		{"empty last member", append(bytes.Clone(good), empty...), true},
		{"empty first member", append(bytes.Clone(empty), good...), true},
		{"wrong header CRC", withHeaderCRC(good, false), false},
		{"truncated", good[:len(good)/2], false},
		{"truncated in the trailer", good[:len(good)-3], false},
		{"corrupt data", flipped(good, len(good)/2), false},
		{"corrupt trailer CRC", flipped(good, len(good)-6), false},
		{"corrupt trailer size", flipped(good, len(good)-2), false},
		{"trailing garbage", append(bytes.Clone(good), "this is not gzip at all\n"...), false},
		{"trailing zeros", append(bytes.Clone(good), make([]byte, 512)...), false},
		{"few trailing zeros", append(bytes.Clone(good), 0, 0, 0, 0, 0), false},
		{"trailing garbage after members", append(bytes.Clone(multi), "garbage"...), false},
		{"trailing gzip magic", append(bytes.Clone(good), 0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3), false},
	}
	for _, c := range cases {
		eachStdin(t, c.name, func(t *testing.T) {
			layout := gzipLayout(t, c.blob, diffID)
			blobDigest := digest.FromBytes(c.blob).Encoded()
			want, werr := pullWith(t, context.Background(), layout, Options{Decompressor: DecompressBuiltin})
			if (werr == nil) != c.accept {
				t.Fatalf("the builtin decompressor: %v, want accepted=%v", werr, c.accept)
			}
			for _, prog := range progs {
				got, err := pullWith(t, context.Background(), layout, Options{Decompressor: prog})
				switch {
				case (err == nil) != (werr == nil):
					t.Errorf("%s: %v; the builtin: %v", prog, err, werr)
				case err != nil:
					if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, blobDigest) {
						t.Errorf("%s: want one line naming blob %s, got %q", prog, blobDigest, msg)
					}
				case !bytes.Equal(got.ImageID, want.ImageID):
					t.Errorf("%s: image %x, the builtin's %x", prog, got.ImageID, want.ImageID)
				}
			}
		})
	}
}

// eachStdin runs f as a subtest twice: with the program reading an oci:
// blob's file as its stdin, and with the blob fed through a pipe, as any
// other source's is.
func eachStdin(t *testing.T, name string, f func(t *testing.T)) {
	for _, asFile := range []bool{true, false} {
		how := "file"
		if !asFile {
			how = "pipe"
		}
		t.Run(name+"/"+how, func(t *testing.T) {
			blobAsFile = asFile
			defer func() { blobAsFile = true }()
			f(t)
		})
	}
}

// loggingInflater is a program that notes each run in log and then runs
// prog; prog "" fails with a message instead.
func loggingInflater(t *testing.T, prog string) (path, log string) {
	t.Helper()
	dir := t.TempDir()
	path, log = filepath.Join(dir, "inflate"), filepath.Join(dir, "log")
	body := "exec " + prog + ` "$@"`
	if prog == "" {
		body = "cat >/dev/null; echo 'inflater exploded' >&2; echo 'second line' >&2; exit 3"
	}
	script := fmt.Sprintf("#!/bin/sh\necho $$ >>%s\n%s\n", log, body)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

func runs(t *testing.T, log string) []int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	return pids
}

// TestInflaterIsUsedAndFallsBack: a one-member layer is inflated by the
// program alone; a several-member one by the program, then by the
// builtin, which decides.
func TestInflaterIsUsedAndFallsBack(t *testing.T) {
	prog := inflaters(t)[0]
	data := layerTar(t, 2, 100<<10)
	diffID := digest.FromBytes(data)
	good := gzipped(t, data, gzip.Header{})
	multi := append(gzipped(t, data[:1000], gzip.Header{}), gzipped(t, data[1000:], gzip.Header{})...)
	for _, c := range []struct {
		name string
		blob []byte
	}{{"one member", good}, {"two members", multi}} {
		t.Run(c.name, func(t *testing.T) {
			path, log := loggingInflater(t, prog)
			if _, err := pullWith(t, context.Background(), gzipLayout(t, c.blob, diffID), Options{Decompressor: path}); err != nil {
				t.Fatal(err)
			}
			if n := len(runs(t, log)); n != 1 {
				t.Errorf("the program ran %d times, want once", n)
			}
		})
	}
	t.Run("failing program", func(t *testing.T) {
		path, log := loggingInflater(t, "")
		if _, err := pullWith(t, context.Background(), gzipLayout(t, good, diffID), Options{Decompressor: path}); err != nil {
			t.Fatalf("the builtin did not take over: %v", err)
		}
		_, err := pullWith(t, context.Background(), gzipLayout(t, good[:len(good)-20], diffID), Options{Decompressor: path})
		if err == nil {
			t.Fatal("a truncated blob was accepted")
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "inflater exploded; second line") || !strings.Contains(msg, "status 3") {
			t.Errorf("want one line with the program's status and stderr, got %q", msg)
		}
		if n := len(runs(t, log)); n != 2 {
			t.Errorf("the program ran %d times, want twice", n)
		}
	})
}

// TestInflaterOnlyForGzip: the zstd and uncompressed layers of an image
// never reach the program (which fails on everything).
func TestInflaterOnlyForGzip(t *testing.T) {
	img, err := testimage.Generate(testimage.Options{Seed: 3, Compression: testimage.Mixed})
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := img.WriteOCILayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	gz := 0
	for _, l := range img.Layers {
		if strings.HasSuffix(l.MediaType, "gzip") {
			gz++
		}
	}
	if gz == 0 || gz == len(img.Layers) {
		t.Fatalf("want gzip and other layers, got %d gzip of %d", gz, len(img.Layers))
	}
	path, log := loggingInflater(t, "")
	if _, err := pullWith(t, context.Background(), layout, Options{Decompressor: path}); err != nil {
		t.Fatal(err)
	}
	if n := len(runs(t, log)); n != gz {
		t.Errorf("the program ran %d times for %d gzip layers", n, gz)
	}
}

// TestInflaterCancelled cancels a pull while the program inflates: it
// must be killed and reaped, and no descriptor or goroutine left.
func TestInflaterCancelled(t *testing.T) {
	eachStdin(t, "cancelled", testInflaterCancelled)
}

func testInflaterCancelled(t *testing.T) {
	prog := inflaters(t)[0]
	data := layerTar(t, 4, 8<<20)
	layout := gzipLayout(t, gzipped(t, data, gzip.Header{}), digest.FromBytes(data))
	path, log := loggingInflater(t, prog)
	// Settle what earlier tests started, then count.
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	fds, goroutines := testfs.OpenFDs(t), runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The program is started before the blob's first byte is read. The
	// pull is cancelled once it runs (it notes its pid first): on a busy
	// machine the cancel could otherwise come before the shell did, and
	// what this test checks is that a running program is killed and reaped.
	var once sync.Once
	progress := func(ev Event) {
		if ev.Kind != "layer-bytes" {
			return
		}
		once.Do(func() {
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if b, _ := os.ReadFile(log); len(b) > 0 {
					break
				}
			}
			cancel()
		})
	}
	repo, err := composefs.Create(filepath.Join(t.TempDir(), "repo"), fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pullInto(t, ctx, repo, layout, Options{Decompressor: path, Progress: progress})
	repo.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("pull: %v, want it cancelled", err)
	}
	pids := runs(t, log)
	if len(pids) != 1 {
		t.Fatalf("the program ran %d times, want once", len(pids))
	}
	// Reaped: not even a zombie is left.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pids[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("process %d is still there after the pull returned (%v)", pids[0], err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, g := testfs.OpenFDs(t), runtime.NumGoroutine()
		if f <= fds && g <= goroutines {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("after the pull: %d descriptors (%d before), %d goroutines (%d before)\n%s", f, fds, g, goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInflaterTrailerCheck: the blob's last 8 bytes are compared with
// the CRC-32 and length of all the output.
func TestInflaterTrailerCheck(t *testing.T) {
	data := []byte("some output")
	var tail [8]byte
	binary.LittleEndian.PutUint32(tail[:4], crc32.ChecksumIEEE(data))
	binary.LittleEndian.PutUint32(tail[4:], uint32(len(data)))
	in := &inflater{sum: &crcReader{crc: crc32.ChecksumIEEE(data), n: int64(len(data))}}
	in.keepTail([]byte("abc"))
	in.keepTail(tail[:5])
	in.keepTail(tail[5:])
	if in.tail != tail || in.tailN != 11 {
		t.Fatalf("kept %x (%d bytes), want %x", in.tail, in.tailN, tail)
	}
	in.keepTail(append([]byte("0123456789"), tail[:]...))
	if in.tail != tail {
		t.Fatalf("kept %x, want %x", in.tail, tail)
	}
}

// TestInflaterReadsBlobFile: the program reads an oci: blob from its file
// (its stdin is that regular file, not a pipe), and the blob is still
// checked by its own read: a blob whose bytes are not what the manifest
// says is refused for its digest or its size, as through the pipe,
// although the program inflated it without complaint.
func TestInflaterReadsBlobFile(t *testing.T) {
	prog := inflaters(t)[0]
	data := layerTar(t, 5, 200<<10)
	diffID := digest.FromBytes(data)
	good := gzipped(t, data, gzip.Header{})
	dir := t.TempDir()
	path, log := filepath.Join(dir, "inflate"), filepath.Join(dir, "log")
	script := fmt.Sprintf("#!/bin/sh\nif [ -f /dev/stdin ]; then echo file >>%s; else echo pipe >>%s; fi\nexec %s \"$@\"\n", log, log, prog)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// other is another gzip stream of the same length and content (only
	// its header's time differs): the program inflates it happily and its
	// tar has the diff ID; only the blob's digest tells it is not the blob.
	other := gzipped(t, data, gzip.Header{ModTime: time.Unix(1e9, 0)})
	if len(other) != len(good) {
		t.Fatalf("test setup: %d and %d bytes", len(other), len(good))
	}
	for _, c := range []struct {
		name    string
		replace []byte // written over the blob's file after the layout
		want    string
	}{
		{"intact", nil, ""},
		{"other bytes", other, "content does not match its digest"},
		{"truncated", good[:len(good)-100], "truncated?"},
	} {
		eachStdin(t, c.name, func(t *testing.T) {
			os.Remove(log)
			layout := gzipLayout(t, good, diffID)
			if c.replace != nil {
				blob := filepath.Join(layout, "blobs", "sha256", digest.FromBytes(good).Encoded())
				if err := os.WriteFile(blob, c.replace, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := pullWith(t, context.Background(), layout, Options{Decompressor: path})
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
			wantStdin := "pipe"
			if blobAsFile {
				wantStdin = "file"
			}
			if got, _ := os.ReadFile(log); strings.TrimSpace(string(got)) != wantStdin {
				t.Errorf("the program's stdin: %q, want %s", got, wantStdin)
			}
		})
	}
}

// TestInflaterFileUnread: a program that exits 0 without reading the
// blob's file to its end does not decide, even when its output (none)
// matches the blob's trailer (an empty member's: CRC 0, length 0). With
// a file as stdin no write fails to tell it; the file's offset does.
func TestInflaterFileUnread(t *testing.T) {
	prog, err := exec.LookPath("true")
	if err != nil {
		t.Skip(err)
	}
	blob := gzipped(t, nil, gzip.Header{})
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	// The checks' own read, on another description.
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	in, err := startInflater(prog, src, file, func() { src.Close() })
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := io.Copy(io.Discard, in); !errors.Is(err, errRefused) {
		t.Fatalf("got %v, want the layer refused", err)
	}
	if in.refused == nil || !strings.Contains(in.refused.Error(), "stopped before the end of the blob") {
		t.Errorf("refused: %v", in.refused)
	}
}

// TestDefaultDecompressor: by default the program found on PATH inflates
// a blob that is a file and not one that is not (a registry's stream,
// here an oci: blob not taken as a file); auto inflates both; without a
// program on PATH the default inflates in process.
func TestDefaultDecompressor(t *testing.T) {
	real := inflaters(t)[0]
	data := layerTar(t, 7, 100<<10)
	layout := gzipLayout(t, gzipped(t, data, gzip.Header{}), digest.FromBytes(data))
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "log")
	script := fmt.Sprintf("#!/bin/sh\necho $$ >>%s\nexec %s \"$@\"\n", log, real)
	if err := os.WriteFile(filepath.Join(bin, "igzip"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		choice string
		asFile bool
		runs   int
	}{
		{"", true, 1},
		{DecompressDefault, true, 1},
		{"", false, 0},
		{DecompressAuto, false, 1},
		{DecompressBuiltin, true, 0},
	} {
		t.Run(fmt.Sprintf("%q/file=%v", c.choice, c.asFile), func(t *testing.T) {
			t.Setenv("PATH", bin)
			blobAsFile = c.asFile
			defer func() { blobAsFile = true }()
			os.Remove(log)
			if _, err := pullWith(t, context.Background(), layout, Options{Decompressor: c.choice}); err != nil {
				t.Fatal(err)
			}
			if n := len(runs(t, log)); n != c.runs {
				t.Errorf("the program ran %d times, want %d", n, c.runs)
			}
		})
	}
	t.Run("no program", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		if _, err := pullWith(t, context.Background(), layout, Options{}); err != nil {
			t.Fatal(err)
		}
	})
}
