// Package testregistry runs an OCI distribution registry inside the test
// process (go-containerregistry's pkg/registry), on 127.0.0.1 over plain
// HTTP, with faults that tests can inject into blob and manifest downloads.
package testregistry

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
)

// Registry is a running registry. Clients must allow plain HTTP
// (c/image: SystemContext.DockerInsecureSkipTLSVerify = OptionalBoolTrue;
// skopeo: --tls-verify=false).
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string

	server *httptest.Server
	inner  http.Handler

	// closing is closed by Close, to release handlers that stall.
	closing   chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	faults []*Fault
	gets   map[string]int // GETs per blob or manifest digest (or tag)
}

type config struct {
	logger  *log.Logger
	blobDir string
}

// Option configures New.
type Option func(t testing.TB, c *config)

// WithRequestLog logs every request through t.Logf, which helps when a
// client's request sequence is the thing under test.
func WithRequestLog() Option {
	return func(t testing.TB, c *config) { c.logger = log.New(testLogWriter{t}, "registry: ", 0) }
}

// WithBlobsOnDisk keeps blobs in a temporary directory instead of memory,
// for the benchmark image.
func WithBlobsOnDisk() Option {
	return func(t testing.TB, c *config) { c.blobDir = t.TempDir() }
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// New starts a registry that stops when t's cleanups run.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	c := &config{logger: log.New(io.Discard, "", 0)}
	for _, o := range opts {
		o(t, c)
	}
	r, err := start("127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Serve starts a registry on addr outside a test (the README demo uses
// it). Addresses other than loopback are refused: this registry has no
// authentication and is for this machine only.
func Serve(addr, blobDir string) (*Registry, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("registry address %s is not a loopback address", addr)
	}
	return start(addr, &config{logger: log.New(io.Discard, "", 0), blobDir: blobDir})
}

func start(addr string, c *config) (*Registry, error) {
	ggcrOpts := []registry.Option{registry.Logger(c.logger)}
	if c.blobDir != "" {
		ggcrOpts = append(ggcrOpts, registry.WithBlobHandler(registry.NewDiskBlobHandler(c.blobDir)))
	}
	r := &Registry{inner: registry.New(ggcrOpts...), gets: map[string]int{}, closing: make(chan struct{})}

	// Loopback only: a registry for tests has no business on other
	// interfaces, and httptest's -httptest.serve flag could move it.
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r.server = httptest.NewUnstartedServer(r)
	r.server.Listener = listener
	r.server.Start()
	r.Host = listener.Addr().String()
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() {
	r.closeOnce.Do(func() { close(r.closing) })
	r.server.Close()
}

// Reference returns the c/image name of repo:tag on this registry.
func (r *Registry) Reference(repo, tag string) string {
	return "docker://" + r.Host + "/" + repo + ":" + tag
}

// Push uploads img as repo:tag and returns its c/image reference,
// "docker://127.0.0.1:PORT/repo:tag". It speaks the distribution API
// directly (monolithic POST uploads, manifest PUT), so that a client bug
// in a push library cannot hide one in the registry or vice versa. Layers
// stream from the generator, so the benchmark image can be pushed too.
func (r *Registry) Push(t testing.TB, repo, tag string, img *testimage.Image) string {
	t.Helper()
	ref, err := r.PushImage(repo, tag, img)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// PushImage is Push returning an error, for use outside tests.
func (r *Registry) PushImage(repo, tag string, img *testimage.Image) (string, error) {
	base := r.server.URL + "/v2/" + repo
	blobs := []struct {
		digest digest.Digest
		size   int64
	}{{img.ConfigDigest, int64(len(img.Config))}}
	for _, l := range img.Layers {
		blobs = append(blobs, struct {
			digest digest.Digest
			size   int64
		}{l.Digest, l.Size})
	}
	client := r.server.Client()
	for _, b := range blobs {
		head, err := client.Head(base + "/blobs/" + b.digest.String())
		if err != nil {
			return "", err
		}
		head.Body.Close()
		if head.StatusCode == http.StatusOK {
			continue // shared with an image pushed earlier
		}
		body, _, err := img.OpenBlob(b.digest)
		if err != nil {
			return "", err
		}
		req, err := http.NewRequest(http.MethodPost, base+"/blobs/uploads/?digest="+b.digest.String(), body)
		if err != nil {
			return "", err
		}
		req.ContentLength = b.size
		req.Header.Set("Content-Type", "application/octet-stream")
		if err := expectStatus(client, req, http.StatusCreated); err != nil {
			return "", err
		}
	}
	req, err := http.NewRequest(http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(img.Manifest))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", img.ManifestDescriptor().MediaType)
	if err := expectStatus(client, req, http.StatusCreated); err != nil {
		return "", err
	}
	return r.Reference(repo, tag), nil
}

func expectStatus(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, msg)
	}
	return nil
}

// Gets returns how many GET requests reached the blob or manifest named by
// d (a digest, or a tag for manifests), faulted ones included.
func (r *Registry) Gets(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets[d.String()]
}

// ServeHTTP counts and faults GETs, completes open-ended Range requests,
// and passes everything to the ggcr registry.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	target, isBlob := getTarget(req)
	if target == "" {
		r.inner.ServeHTTP(w, req)
		return
	}
	r.mu.Lock()
	r.gets[target]++
	fault := r.takeFault(target, isBlob)
	r.mu.Unlock()

	start := int64(0)
	if isBlob {
		start = r.completeRange(req)
	}
	if fault == nil {
		r.inner.ServeHTTP(w, req)
		return
	}
	fault.serve(w, req, r.inner, start, r.closing)
}

// getTarget returns the last path element of a GET for a blob or a
// manifest.
func getTarget(req *http.Request) (target string, isBlob bool) {
	if req.Method != http.MethodGet {
		return "", false
	}
	elems := strings.Split(strings.TrimSuffix(req.URL.Path, "/"), "/")
	if len(elems) < 4 {
		return "", false
	}
	switch elems[len(elems)-2] {
	case "blobs":
		return elems[len(elems)-1], true
	case "manifests":
		return elems[len(elems)-1], false
	}
	return "", false
}

// completeRange rewrites "Range: bytes=N-" to "bytes=N-LAST": c/image
// resumes interrupted blob downloads with open-ended ranges, which every
// real registry serves but ggcr's registry rejects with 416. It returns
// the offset the response starts at.
func (r *Registry) completeRange(req *http.Request) int64 {
	rangeHeader := req.Header.Get("Range")
	if rangeHeader == "" {
		return 0
	}
	var first, last int64
	if _, err := fmt.Sscanf(rangeHeader, "bytes=%d-%d", &first, &last); err == nil {
		return first
	}
	if _, err := fmt.Sscanf(rangeHeader, "bytes=%d-", &first); err != nil {
		return 0 // let ggcr reject what it does not understand
	}
	head := httptest.NewRecorder()
	headReq := req.Clone(req.Context())
	headReq.Method = http.MethodHead
	headReq.Header.Del("Range")
	r.inner.ServeHTTP(head, headReq)
	var size int64
	if _, err := fmt.Sscan(head.Header().Get("Content-Length"), &size); err != nil || first >= size {
		return 0
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, size-1))
	return first
}
