package erofs

// On-disk constants of the composefs EROFS image (little-endian throughout).
const (
	BlockSize     = 4096
	blockBits     = 12
	slotSize      = 32
	superOffset   = 1024
	superSize     = 128
	compactSize   = 32
	extendedSize  = 64
	direntSize    = 12
	xattrHdrSize  = 12
	xattrEntrySz  = 4
	MaxNameLen    = 255
	maxPayloadLen = 4095 // PATH_MAX-1, as mkcomposefs
	// MaxInlineContent is the largest inline file mkcomposefs accepts.
	MaxInlineContent = 5000
	// InlineThreshold is the size up to which composefs-rs stores a file's
	// bytes in the image instead of the objects dir.
	InlineThreshold = 64
	// maxChunks bounds the chunk map of an external file to one block.
	maxChunks = 1024

	composefsMagic   = 0xd078629a
	composefsVersion = 1 // version of the composefs header itself
	headerFlagHasACL = 1
	erofsMagic       = 0xE0F5E1E2
	featureCompat    = 0x2 | 0x4 // MTIME | XATTR_FILTER
	rootNidFixed     = 36

	layoutFlatPlain  = 0
	layoutFlatInline = 2
	layoutChunkBased = 4

	xattrFilterSeed = 0x25BBE08F
	// maxSharedPerInode is mkcomposefs's cap on shared references per inode.
	maxSharedPerInode = 128
	nullAddr          = 0xFFFFFFFF

	xattrIndexUser       = 1
	xattrIndexACLAccess  = 2
	xattrIndexACLDefault = 3
	xattrIndexTrusted    = 4
	xattrIndexSecurity   = 6
)

// Dirent file types.
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

// Overlayfs xattrs composefs adds or escapes.
const (
	overlayPrefix        = "trusted.overlay."
	overlayEscapePrefix  = "trusted.overlay.overlay."
	xattrMetacopy        = "trusted.overlay.metacopy"
	xattrRedirect        = "trusted.overlay.redirect"
	xattrOpaque          = "trusted.overlay.opaque"
	xattrEscWhiteout     = "trusted.overlay.overlay.whiteout"
	xattrEscWhiteouts    = "trusted.overlay.overlay.whiteouts"
	xattrEscOpaque       = "trusted.overlay.overlay.opaque"
	xattrUserWhiteout    = "user.overlay.whiteout"
	xattrUserWhiteouts   = "user.overlay.whiteouts"
	xattrUserOpaque      = "user.overlay.opaque"
	xattrACLAccess       = "system.posix_acl_access"
	xattrACLDefault      = "system.posix_acl_default"
	xattrSELinux         = "security.selinux"
	fsverityAlgSHA256    = 1
	fsverityAlgSHA512    = 2
	maxXattrValue        = 65535
	maxXattrName         = 255
	maxDumpfileXattrSize = 65535 / 2
)

func fileType(mode uint32) uint8 {
	switch mode & TypeMask {
	case TypeRegular:
		return ftReg
	case TypeDir:
		return ftDir
	case TypeChar:
		return ftChr
	case TypeBlock:
		return ftBlk
	case TypeFifo:
		return ftFifo
	case TypeSocket:
		return ftSock
	case TypeSymlink:
		return ftSymlink
	}
	return ftUnknown
}

// ValidType reports whether mode has one of the seven file types.
func ValidType(mode uint32) bool { return fileType(mode) != ftUnknown }

func roundUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

// xattrIndex splits a full xattr name into the EROFS prefix index and the
// stored suffix. The prefixes are matched as mkcomposefs does (plain prefix
// match, so "system.posix_acl_accessX" gets index 2 and suffix "X").
func xattrIndex(name string) (uint8, string) {
	for _, p := range [...]struct {
		prefix string
		index  uint8
	}{
		{"user.", xattrIndexUser},
		{xattrACLAccess, xattrIndexACLAccess},
		{xattrACLDefault, xattrIndexACLDefault},
		{"trusted.", xattrIndexTrusted},
		{"security.", xattrIndexSecurity},
	} {
		if len(name) >= len(p.prefix) && name[:len(p.prefix)] == p.prefix {
			return p.index, name[len(p.prefix):]
		}
	}
	return 0, name
}

// xattrPrefixes maps an index back to its prefix for the reader.
var xattrPrefixes = map[uint8]string{
	0:                    "",
	xattrIndexUser:       "user.",
	xattrIndexACLAccess:  xattrACLAccess,
	xattrIndexACLDefault: xattrACLDefault,
	xattrIndexTrusted:    "trusted.",
	5:                    "lustre.",
	xattrIndexSecurity:   "security.",
}

func xattrEntrySize(name string, valueLen int) uint64 {
	_, suffix := xattrIndex(name)
	return roundUp(uint64(4+len(suffix)+valueLen), 4)
}
