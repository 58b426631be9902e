// Package bootcconv is the one home of the conventions by which bootc and
// ostree-ext name and describe a container image: how an image config is
// read (its version label, its timestamps), the ostree commit metadata
// keys, the tag an image gets in bootc's composefs repository, and the
// image-reference forms of an origin file. The other packages import it
// rather than spelling these again; it uses only the standard library.
package bootcconv

// Commit metadata keys of an ostree commit made from a container image,
// as ostree-ext writes and bootc reads them.
const (
	KeyManifest       = "ostree.manifest"
	KeyManifestDigest = "ostree.manifest-digest"
	KeyImageConfig    = "ostree.container.image-config"
	KeyBootable       = "ostree.bootable"
	// KeySynthesized marks a commit synthesized from a composefs
	// repository (so it has no per-layer blob refs).
	KeySynthesized = "ostree-ext.composefs-synthesized"
	// KeyVersion and KeyLinux are ostree's own: `ostree admin status`
	// shows the version, and the kernel version names the boot files.
	KeyVersion = "version"
	KeyLinux   = "ostree.linux"
)

// Image config labels and manifest annotations bootc reads.
const (
	LabelVersion       = "org.opencontainers.image.version"
	LabelVersionLegacy = "version"
	AnnotationCreated  = "org.opencontainers.image.created"
	AnnotationVersion  = "org.opencontainers.image.version"
)

// TagPrefix starts the tag bootc gives an image in its composefs
// repository: localhost/bootc-<manifest digest>.
const TagPrefix = "localhost/bootc-"

// DefaultTag is the tag bootc gives the image with this manifest digest.
func DefaultTag(manifestDigest string) string { return TagPrefix + manifestDigest }
