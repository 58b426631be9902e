package bootimage

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// UKIInfo is what a UKI's PE sections say about it.
type UKIInfo struct {
	// Cmdline is the .cmdline section ("" when there is none), without
	// the NULs and whitespace that may pad it.
	Cmdline string
	// OSRel is the .osrel section parsed, nil when there is none.
	OSRel OSRelease
	// Uname is the .uname section (the kernel release), "" if absent.
	Uname string
	// ComposefsID is the hex digest of composefs=<id> on Cmdline: the UKI
	// is sealed for the boot image with that fs-verity digest. "" means
	// the UKI is not sealed.
	ComposefsID string
	// Insecure is set for composefs=?<id>: the image may be mounted
	// without fs-verity.
	Insecure bool
	// BootDigest is bootc's boot digest of the UKI, the hex SHA-256 of
	// its .linux then its .initrd section; only ParseUKIDigest fills it.
	BootDigest string
}

// Sealed reports whether the UKI names the boot image it may boot.
func (u *UKIInfo) Sealed() bool { return u.ComposefsID != "" }

// maxSection bounds the text sections read into memory; real ones are a
// few hundred bytes.
const maxSection = 1 << 20

// ParseUKI reads the sections of a UKI (a PE/COFF image). Errors are one
// line and say what is wrong with the file.
func ParseUKI(r io.ReaderAt) (*UKIInfo, error) { return parseUKI(r, false) }

// ParseUKIDigest is ParseUKI that also computes BootDigest, which reads
// the kernel and initramfs: what a deployment's origin records
// ([boot] digest), as bootc's compute_boot_digest_uki does. Both
// sections must be there.
func ParseUKIDigest(r io.ReaderAt) (*UKIInfo, error) { return parseUKI(r, true) }

func parseUKI(r io.ReaderAt, digest bool) (u *UKIInfo, err error) {
	// debug/pe is not hardened against hostile input and may panic on a
	// malformed file; an image's UKI is input like any other.
	defer func() {
		if p := recover(); p != nil {
			u, err = nil, fmt.Errorf("%w: malformed (%v)", ErrNotPE, p)
		}
	}()
	if err := checkHeaders(r); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotPE, err)
	}
	f, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotPE, oneLine(err))
	}
	defer f.Close()
	u = &UKIInfo{}
	cmdline, err := textSection(f, ".cmdline")
	if err != nil {
		return nil, err
	}
	u.Cmdline = cmdline
	if osrel, err := textSection(f, ".osrel"); err != nil {
		return nil, err
	} else if f.Section(".osrel") != nil {
		u.OSRel = ParseOSRelease(osrel)
	}
	if u.Uname, err = textSection(f, ".uname"); err != nil {
		return nil, err
	}
	if u.ComposefsID, u.Insecure, err = CmdlineComposefs(u.Cmdline); err != nil {
		return nil, fmt.Errorf(".cmdline: %w", err)
	}
	if digest {
		h := sha256.New()
		for _, name := range []string{".linux", ".initrd"} {
			if err := copySection(h, f, name); err != nil {
				return nil, err
			}
		}
		u.BootDigest = hex.EncodeToString(h.Sum(nil))
	}
	return u, nil
}

// copySection writes a section's first VirtualSize bytes (the rest is
// file-alignment padding) to w, as composefs-rs reads a section.
func copySection(w io.Writer, f *pe.File, name string) error {
	s := f.Section(name)
	if s == nil {
		return fmt.Errorf("no %s section", name)
	}
	n := int64(s.VirtualSize)
	if n > int64(s.Size) {
		return fmt.Errorf("section %s: virtual size %d is larger than its %d bytes in the file", name, s.VirtualSize, s.Size)
	}
	if _, err := io.CopyN(w, s.Open(), n); err != nil {
		return fmt.Errorf("section %s: %s", name, oneLine(err))
	}
	return nil
}

// Bounds on what debug/pe decodes: it reads every section header, COFF
// relocation and symbol the headers announce, so a few changed header
// bytes could make it decode gigabytes. The PE loader's own limit is 96
// sections; UKIs have no COFF relocations and few symbols.
const (
	maxSections    = 96
	maxRelocations = 1 << 12
	maxSymbols     = 1 << 14
)

// checkHeaders reads the DOS and COFF headers and the section table and
// refuses counts beyond the bounds above, before debug/pe trusts them.
func checkHeaders(r io.ReaderAt) error {
	var dos [64]byte
	if _, err := r.ReadAt(dos[:], 0); err != nil {
		return fmt.Errorf("reading the DOS header: %s", oneLine(err))
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return errors.New("no MZ signature")
	}
	peAt := int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	var coff [24]byte
	if _, err := r.ReadAt(coff[:], peAt); err != nil {
		return fmt.Errorf("reading the PE header at %d: %s", peAt, oneLine(err))
	}
	if string(coff[:4]) != "PE\x00\x00" {
		return fmt.Errorf("no PE signature at %d", peAt)
	}
	nsec := int(binary.LittleEndian.Uint16(coff[6:]))
	nsym := binary.LittleEndian.Uint32(coff[16:])
	optSize := int64(binary.LittleEndian.Uint16(coff[20:]))
	if nsec > maxSections {
		return fmt.Errorf("%d sections, more than the %d a PE image may have", nsec, maxSections)
	}
	if nsym > maxSymbols {
		return fmt.Errorf("%d COFF symbols, more than %d", nsym, maxSymbols)
	}
	table := make([]byte, 40*nsec)
	if _, err := r.ReadAt(table, peAt+24+optSize); err != nil {
		return fmt.Errorf("reading the section table: %s", oneLine(err))
	}
	relocs := 0
	for i := 0; i < nsec; i++ {
		relocs += int(binary.LittleEndian.Uint16(table[40*i+32:]))
	}
	if relocs > maxRelocations {
		return fmt.Errorf("%d COFF relocations, more than %d", relocs, maxRelocations)
	}
	return nil
}

// textSection returns a section's bytes as text: its first VirtualSize
// bytes (the rest of the raw data is file-alignment padding), trailing
// NULs and whitespace removed. A missing section is "".
func textSection(f *pe.File, name string) (string, error) {
	s := f.Section(name)
	if s == nil {
		return "", nil
	}
	n := int64(s.VirtualSize)
	if n > int64(s.Size) {
		// composefs-rs reads VirtualSize bytes from the file; more than
		// the section holds is a malformed image.
		return "", fmt.Errorf("section %s: virtual size %d is larger than its %d bytes in the file", name, s.VirtualSize, s.Size)
	}
	if n > maxSection {
		return "", fmt.Errorf("section %s: %d bytes is too large for a text section", name, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(s.Open(), buf); err != nil {
		return "", fmt.Errorf("section %s: %s", name, oneLine(err))
	}
	return strings.TrimRight(string(buf), "\x00 \t\r\n"), nil
}

// CmdlineComposefs returns the digest of the first composefs= argument
// of a kernel command line (composefs=<hex> or composefs=?<hex>), "" when
// there is none. A value that is not a SHA-256 or SHA-512 digest in hex
// is an error.
func CmdlineComposefs(cmdline string) (id string, insecure bool, err error) {
	for _, arg := range SplitCmdline(cmdline) {
		v, ok := strings.CutPrefix(arg, "composefs=")
		if !ok {
			continue
		}
		v, insecure = strings.CutPrefix(v, "?")
		if len(v) != 64 && len(v) != 128 {
			return "", false, fmt.Errorf("composefs=%s: not a 64- or 128-digit hex digest", v)
		}
		if _, err := hex.DecodeString(v); err != nil {
			return "", false, fmt.Errorf("composefs=%s: not a hex digest", v)
		}
		return strings.ToLower(v), insecure, nil
	}
	return "", false, nil
}

// SplitCmdline splits a kernel command line into arguments at unquoted
// whitespace; double quotes group, and stay in the argument, as the
// kernel and composefs-rs treat them.
func SplitCmdline(cmdline string) []string {
	var args []string
	inQuotes := false
	start := 0
	for i := 0; i < len(cmdline); i++ {
		c := cmdline[i]
		if c == '"' {
			inQuotes = !inQuotes
		}
		if !inQuotes && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
			if i > start {
				args = append(args, cmdline[start:i])
			}
			start = i + 1
		}
	}
	if start < len(cmdline) {
		args = append(args, cmdline[start:])
	}
	return args
}

// MismatchError is a sealed UKI naming a boot image other than the one
// the image makes.
type MismatchError struct {
	Path   string // the UKI in the image
	Sealed string // composefs= of its .cmdline
	Boot   string // the boot image's fs-verity digest
}

func (e *MismatchError) Error() string {
	msg := fmt.Sprintf("%s is sealed for composefs=%s but the image's boot image is %s", e.Path, e.Sealed, e.Boot)
	if !strings.HasPrefix(e.Path, "/boot/") {
		// Outside /boot the UKI is part of the boot image it names, so no
		// id can ever match.
		msg += "; a UKI outside /boot is part of the boot image and cannot be sealed for it (put it under " + UKIDir + ")"
	}
	return msg
}

// ErrNotPE is wrapped by errors about files that are not PE images.
var ErrNotPE = errors.New("not a PE image")

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// readerAt gives debug/pe random access to r: directly when r has it,
// otherwise from a copy in memory of at most limit bytes.
func readerAt(r io.Reader, limit int64) (io.ReaderAt, error) {
	if ra, ok := r.(io.ReaderAt); ok {
		return ra, nil
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return bytes.NewReader(data), nil
}
