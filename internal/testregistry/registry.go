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
	ggcrOpts := []registry.Option{registry.Logger(c.logger)}
	if c.blobDir != "" {
		ggcrOpts = append(ggcrOpts, registry.WithBlobHandler(registry.NewDiskBlobHandler(c.blobDir)))
	}
	r := &Registry{inner: registry.New(ggcrOpts...), gets: map[string]int{}}

	// Loopback only: a registry for tests has no business on other
	// interfaces, and httptest's -httptest.serve flag could move it.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.server = httptest.NewUnstartedServer(r)
	r.server.Listener = listener
	r.server.Start()
	t.Cleanup(r.server.Close)
	r.Host = listener.Addr().String()
	return r
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
			t.Fatal(err)
		}
		head.Body.Close()
		if head.StatusCode == http.StatusOK {
			continue // shared with an image pushed earlier
		}
		body, _, err := img.OpenBlob(b.digest)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, base+"/blobs/uploads/?digest="+b.digest.String(), body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = b.size
		req.Header.Set("Content-Type", "application/octet-stream")
		expectStatus(t, client, req, http.StatusCreated)
	}
	req, err := http.NewRequest(http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(img.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", img.ManifestDescriptor().MediaType)
	expectStatus(t, client, req, http.StatusCreated)
	return r.Reference(repo, tag)
}

func expectStatus(t testing.TB, client *http.Client, req *http.Request, want int) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, msg)
	}
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
	fault.serve(w, req, r.inner, start)
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
