// Package pull fetches an image through containers/image (any transport:
// docker://, oci:, oci-archive:, docker-archive:, dir:, containers-storage:)
// with the host's signature policy, registries.conf and auth files, and
// stores it in a composefs repository.
package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// Source is an opened image: its manifest (a single-platform one, a list
// having been resolved), config and layers, checked against the policy.
type Source struct {
	Name           string
	src            types.ImageSource
	lowSpeed       LowSpeed
	ManifestDigest string
	Manifest       []byte
	ManifestType   string
	ConfigDigest   string
	Config         []byte
	Layers         []types.BlobInfo
}

// supportedLayerTypes are the tar layer media types; anything else (an
// artifact, an encrypted layer) is refused by name.
var supportedLayerTypes = map[string]bool{
	"application/vnd.oci.image.layer.v1.tar":                       true,
	"application/vnd.oci.image.layer.v1.tar+gzip":                  true,
	"application/vnd.oci.image.layer.v1.tar+zstd":                  true,
	"application/vnd.docker.image.rootfs.diff.tar.gzip":            true,
	"application/vnd.docker.image.rootfs.diff.tar":                 true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": true,
}

// PolicyContext returns the policy pull decisions are made with: the
// host's (sys.SignaturePolicyPath or /etc/containers/policy.json), or,
// only when insecure is asked for explicitly, one accepting anything.
func PolicyContext(sys *types.SystemContext, insecure bool) (*signature.PolicyContext, error) {
	var policy *signature.Policy
	if insecure {
		policy = &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}}
	} else {
		var err error
		if policy, err = signature.DefaultPolicy(sys); err != nil {
			return nil, fmt.Errorf("reading the signature policy: %w", err)
		}
	}
	return signature.NewPolicyContext(policy)
}

// Open resolves name, fetches and verifies its manifest and config, and
// checks the policy. Close it when done. Every request is held to
// DefaultLowSpeed unless WithLowSpeed says otherwise.
func Open(ctx context.Context, name string, sys *types.SystemContext, policy *signature.PolicyContext, opts ...Option) (*Source, error) {
	ref, err := alltransports.ParseImageName(name)
	if err != nil {
		return nil, fmt.Errorf("image name %q: %w", name, err)
	}
	s := &Source{Name: name, lowSpeed: DefaultLowSpeed}
	for _, o := range opts {
		o(s)
	}
	// The docker transport fetches the manifest here already.
	err = s.watched(ctx, "manifest", func(ctx context.Context) error {
		src, err := ref.NewImageSource(ctx, sys)
		if err == nil {
			s.src = src
		}
		return err
	})
	if err != nil {
		if s.src != nil {
			s.src.Close()
		}
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	if err := s.load(ctx, sys, policy); err != nil {
		s.src.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) load(ctx context.Context, sys *types.SystemContext, policy *signature.PolicyContext) error {
	raw, mimeType, err := s.getManifest(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: fetching the manifest: %w", s.Name, err)
	}
	var instance *digest.Digest
	if manifest.MIMETypeIsMultiImage(mimeType) {
		list, err := manifest.ListFromBlob(raw, mimeType)
		if err != nil {
			return fmt.Errorf("%s: manifest list: %w", s.Name, err)
		}
		d, err := list.ChooseInstance(sys)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		instance = &d
		if raw, mimeType, err = s.getManifest(ctx, instance); err != nil {
			return fmt.Errorf("%s: fetching the manifest of %s: %w", s.Name, d, err)
		}
		if ok, err := manifest.MatchesDigest(raw, d); err != nil || !ok {
			return fmt.Errorf("%s: manifest %s does not match its digest", s.Name, d)
		}
	}
	if mimeType == manifest.DockerV2Schema1MediaType || mimeType == manifest.DockerV2Schema1SignedMediaType {
		return fmt.Errorf("%s: Docker schema 1 manifests are not supported (no config, no diff IDs)", s.Name)
	}
	allowed, err := policy.IsRunningImageAllowed(ctx, image.UnparsedInstance(s.src, instance))
	if err != nil || !allowed {
		return fmt.Errorf("%s: refused by the signature policy: %v", s.Name, err)
	}
	d, err := manifest.Digest(raw)
	if err != nil {
		return err
	}
	if ref := s.src.Reference().DockerReference(); ref != nil {
		if canon, ok := ref.(interface{ Digest() digest.Digest }); ok && canon.Digest() != "" && instance == nil && canon.Digest() != d {
			return fmt.Errorf("%s: manifest has digest %s, the reference names %s", s.Name, d, canon.Digest())
		}
	}
	m, err := manifest.FromBlob(raw, mimeType)
	if err != nil {
		return fmt.Errorf("%s: manifest: %w", s.Name, err)
	}
	s.Manifest, s.ManifestType, s.ManifestDigest = raw, mimeType, d.String()
	cfg := m.ConfigInfo()
	if s.Config, err = s.readBlob(ctx, cfg, 64<<20); err != nil {
		return fmt.Errorf("%s: config %s: %w", s.Name, cfg.Digest, err)
	}
	s.ConfigDigest = cfg.Digest.String()
	for _, l := range m.LayerInfos() {
		if !supportedLayerTypes[l.MediaType] {
			return fmt.Errorf("%s: layer %s has unsupported media type %q", s.Name, l.Digest, l.MediaType)
		}
		s.Layers = append(s.Layers, l.BlobInfo)
	}
	return nil
}

// readBlob reads a small blob whole and verifies its digest.
func (s *Source) readBlob(ctx context.Context, info types.BlobInfo, limit int64) ([]byte, error) {
	rc, err := s.OpenBlob(ctx, info)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// OpenBlob returns a blob whose reader fails at EOF unless the bytes match
// the blob's digest and size, so nothing unverified is ever accepted.
func (s *Source) OpenBlob(ctx context.Context, info types.BlobInfo) (io.ReadCloser, error) {
	if err := info.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", info.Digest, err)
	}
	ctx, wd := watch(ctx, s.lowSpeed, "blob "+info.Digest.String())
	wd.wait()
	rc, _, err := s.src.GetBlob(ctx, info, none.NoCache)
	if serr := wd.got(0); serr != nil {
		if rc != nil {
			rc.Close()
		}
		err = serr
	}
	if err != nil {
		wd.done()
		return nil, err
	}
	return &verifiedBlob{rc: &watchedBody{r: rc, wd: wd}, digest: info.Digest, size: info.Size, v: info.Digest.Verifier()}, nil
}

// getManifest fetches a manifest under the stall rule.
func (s *Source) getManifest(ctx context.Context, instance *digest.Digest) (raw []byte, mimeType string, err error) {
	err = s.watched(ctx, "manifest", func(ctx context.Context) error {
		raw, mimeType, err = s.src.GetManifest(ctx, instance)
		return err
	})
	return raw, mimeType, err
}

// watched runs a request that returns its whole answer at once: it
// stalls when it takes the rule's time without an answer.
func (s *Source) watched(ctx context.Context, what string, request func(context.Context) error) error {
	ctx, wd := watch(ctx, s.lowSpeed, what)
	defer wd.done()
	wd.wait()
	err := request(ctx)
	if serr := wd.got(0); serr != nil {
		return serr
	}
	return err
}

// Close releases the source.
func (s *Source) Close() error { return s.src.Close() }

// ErrDigestMismatch is wrapped when a blob's bytes do not match its digest.
var ErrDigestMismatch = errors.New("content does not match its digest")

type verifiedBlob struct {
	rc     io.ReadCloser
	digest digest.Digest
	size   int64
	n      int64
	v      digest.Verifier
}

func (b *verifiedBlob) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.v.Write(p[:n])
	b.n += int64(n)
	if b.size > 0 && b.n > b.size {
		return n, fmt.Errorf("blob %s: more than the %d bytes the manifest declares", b.digest, b.size)
	}
	if err == io.EOF {
		if b.size > 0 && b.n != b.size {
			return n, fmt.Errorf("blob %s: got %d bytes, the manifest declares %d (truncated?)", b.digest, b.n, b.size)
		}
		if !b.v.Verified() {
			return n, fmt.Errorf("blob %s: %w", b.digest, ErrDigestMismatch)
		}
	}
	return n, err
}

func (b *verifiedBlob) Close() error { return b.rc.Close() }

// file is the regular file the transport reads the blob from (oci:,
// oci-archive: and dir: open the blob's file), or nil. Its bytes are
// not verified: only what Read returns is.
func (b *verifiedBlob) file() *os.File {
	wb, ok := b.rc.(*watchedBody)
	if !ok {
		return nil
	}
	f, ok := wb.r.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return f
}
