package bootcconv

import (
	"fmt"
	"strings"
)

// ImageReference is bootc's spec ImageReference: what an origin's
// container-image-reference (an ostree-ext OstreeImageReference) means.
type ImageReference struct {
	Image     string // e.g. quay.io/org/os:42, or /path for oci
	Transport string // registry, containers-storage, oci, oci-archive, docker-daemon, dir
	// Signature is bootc's ImageSignature: "" (unverified, omitted),
	// "containerPolicy", "insecure", or the remote name for ostreeRemote.
	Signature    string
	OstreeRemote string
}

// ParseImageReference reads the forms ostree-ext writes:
//
//	ostree-unverified-registry:<name>
//	ostree-unverified-image:<transport>:<name>
//	ostree-image-signed:<transport>:<name>
//	ostree-remote-registry:<remote>:<name>
//	ostree-remote-image:<remote>:<transport>:<name>
func ParseImageReference(s string) (ImageReference, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return ImageReference{}, fmt.Errorf("%q is not an ostree image reference", s)
	}
	var r ImageReference
	var err error
	switch scheme {
	case "ostree-unverified-registry":
		r.Transport, r.Image = "registry", rest
	case "ostree-unverified-image":
		r.Transport, r.Image, err = splitTransport(rest)
	case "ostree-image-signed":
		r.Signature = "containerPolicy"
		r.Transport, r.Image, err = splitTransport(rest)
	case "ostree-remote-registry", "ostree-remote-image":
		remote, img, ok := strings.Cut(rest, ":")
		if !ok || remote == "" {
			return r, fmt.Errorf("%q: no remote name", s)
		}
		r.Signature, r.OstreeRemote = "ostreeRemote", remote
		if scheme == "ostree-remote-registry" {
			r.Transport, r.Image = "registry", img
		} else {
			r.Transport, r.Image, err = splitTransport(img)
		}
	default:
		return r, fmt.Errorf("%q: unknown scheme %q", s, scheme)
	}
	if err != nil {
		return r, fmt.Errorf("%q: %w", s, err)
	}
	if r.Image == "" {
		return r, fmt.Errorf("%q: empty image name", s)
	}
	return r, nil
}

// splitTransport maps a containers/image transport prefix to bootc's
// transport name (docker:// is "registry").
func splitTransport(s string) (transport, image string, err error) {
	if img, ok := strings.CutPrefix(s, "docker://"); ok {
		return "registry", img, nil
	}
	if img, ok := strings.CutPrefix(s, "registry:"); ok {
		return "registry", img, nil
	}
	t, img, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("no transport in %q", s)
	}
	switch t {
	case "containers-storage", "oci", "oci-archive", "docker-daemon", "dir":
		return t, img, nil
	}
	return "", "", fmt.Errorf("unknown transport %q", t)
}

// String is how bootc status shows the image: registry images bare, others
// as transport:image.
func (r ImageReference) String() string {
	if r.Transport == "registry" {
		return r.Image
	}
	return r.Transport + ":" + r.Image
}
