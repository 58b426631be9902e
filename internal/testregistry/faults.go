package testregistry

import (
	"net/http"

	"github.com/opencontainers/go-digest"
)

// FaultKind is how a faulted GET goes wrong.
type FaultKind int

const (
	// StatusError answers with Fault.Status (500 if zero) and an error
	// body instead of the content.
	StatusError FaultKind = iota + 1
	// CutConnection sends the headers and the content up to blob offset
	// Fault.Offset, then drops the connection. The offset is absolute, so
	// a client that resumes with a Range request at or past it is cut again
	// at once.
	CutConnection
	// CorruptByte serves complete, well-formed responses in which the byte
	// at blob offset Fault.Offset has its bits flipped: only digest
	// verification can notice.
	CorruptByte
	// Stall sends the headers and the content up to blob offset
	// Fault.Offset, then nothing more, keeping the connection open until
	// the client gives up (or the registry closes): a frozen registry.
	// For a manifest, nothing at all is sent.
	Stall
)

// Fault describes one injected failure.
type Fault struct {
	Kind FaultKind
	// Target is the blob or manifest whose GETs fail: a digest, or for a
	// manifest also a tag. Empty means every blob.
	Target digest.Digest
	Offset int64
	Status int
	// Times is how many matching GETs fail before the fault retires
	// itself; 0 means all of them.
	Times int

	hits int
}

// Inject adds a fault. Faults apply to GETs only, so Push is unaffected, and
// the first matching fault wins.
func (r *Registry) Inject(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, &f)
}

// ClearFaults removes all faults, for tests that check recovery.
func (r *Registry) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = nil
}

// takeFault returns the fault for a GET of target, counting the hit. The
// caller holds r.mu.
func (r *Registry) takeFault(target string, isBlob bool) *Fault {
	for i, f := range r.faults {
		if (f.Target == "" && !isBlob) || (f.Target != "" && f.Target.String() != target) {
			continue
		}
		f.hits++
		if f.Times > 0 && f.hits >= f.Times {
			r.faults = append(r.faults[:i:i], r.faults[i+1:]...)
		}
		return f
	}
	return nil
}

func (f *Fault) serve(w http.ResponseWriter, req *http.Request, next http.Handler, start int64, closing <-chan struct{}) {
	switch f.Kind {
	case StatusError:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}`))
	case CutConnection:
		next.ServeHTTP(&cuttingWriter{ResponseWriter: w, pos: start, cutAt: f.Offset}, req)
	case CorruptByte:
		next.ServeHTTP(&corruptingWriter{ResponseWriter: w, pos: start, at: f.Offset}, req)
	case Stall:
		next.ServeHTTP(&stallingWriter{ResponseWriter: w, pos: start, stallAt: f.Offset, req: req, closing: closing}, req)
	default:
		panic("testregistry: unknown fault kind")
	}
}

// cuttingWriter forwards a body until blob offset cutAt, then aborts the
// handler: net/http closes the connection without ending the body, and
// since Content-Length was announced the client sees an unexpected EOF,
// as with a real network failure.
type cuttingWriter struct {
	http.ResponseWriter
	pos, cutAt int64
}

func (c *cuttingWriter) Write(p []byte) (int, error) {
	if c.pos+int64(len(p)) <= c.cutAt {
		n, err := c.ResponseWriter.Write(p)
		c.pos += int64(n)
		return n, err
	}
	if keep := c.cutAt - c.pos; keep > 0 {
		_, _ = c.ResponseWriter.Write(p[:keep])
	}
	_ = http.NewResponseController(c.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

type corruptingWriter struct {
	http.ResponseWriter
	pos, at int64
}

func (c *corruptingWriter) Write(p []byte) (int, error) {
	if i := c.at - c.pos; i >= 0 && i < int64(len(p)) {
		damaged := append([]byte(nil), p...)
		damaged[i] ^= 0xff
		p = damaged
	}
	n, err := c.ResponseWriter.Write(p)
	c.pos += int64(n)
	return n, err
}

// stallingWriter forwards a body until blob offset stallAt, flushes it,
// and then sends nothing until the client goes away or the registry
// closes; then it aborts the handler.
type stallingWriter struct {
	http.ResponseWriter
	pos, stallAt int64
	req          *http.Request
	closing      <-chan struct{}
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	if s.pos+int64(len(p)) <= s.stallAt {
		n, err := s.ResponseWriter.Write(p)
		s.pos += int64(n)
		return n, err
	}
	if keep := s.stallAt - s.pos; keep > 0 {
		_, _ = s.ResponseWriter.Write(p[:keep])
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
	select {
	case <-s.req.Context().Done():
	case <-s.closing:
	}
	panic(http.ErrAbortHandler)
}
