package testimage

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// UKIStub is the EFI stub of Debian's systemd-boot-efi package, onto
// which BuildUKI adds a UKI's sections.
const UKIStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// UKISpec is what goes into a UKI's sections.
type UKISpec struct {
	Cmdline   string // .cmdline; sealed when it carries composefs=<id>
	OSRelease string // .osrel
	Uname     string // .uname
	Linux     []byte // .linux, the kernel
	Initrd    []byte // .initrd
}

// BuildUKI makes a UKI with objcopy from UKIStub, as ukify and the
// systemd documentation do: each section added from a file at a virtual
// address past the stub's own sections. tmp is a scratch directory. An
// empty field leaves its section out.
func BuildUKI(tmp string, s UKISpec) ([]byte, error) {
	if _, err := os.Stat(UKIStub); err != nil {
		return nil, fmt.Errorf("testimage: the EFI stub of systemd-boot-efi is missing (make deps installs it): %w", err)
	}
	dir, err := os.MkdirTemp(tmp, "uki-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sections := []struct {
		name string
		vma  string
		data []byte
	}{
		{".osrel", "0x20000", []byte(s.OSRelease)},
		{".cmdline", "0x30000", []byte(s.Cmdline)},
		{".uname", "0x40000", []byte(s.Uname)},
		{".linux", "0x2000000", s.Linux},
		{".initrd", "0x3000000", s.Initrd},
	}
	var args []string
	for _, sec := range sections {
		if len(sec.data) == 0 {
			continue
		}
		f := filepath.Join(dir, sec.name[1:])
		if err := os.WriteFile(f, sec.data, 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--add-section", sec.name+"="+f, "--change-section-vma", sec.name+"="+sec.vma)
	}
	out := filepath.Join(dir, "uki.efi")
	cmd := exec.Command("objcopy", append(args, UKIStub, out)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("testimage: objcopy: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return os.ReadFile(out)
}

// SealedUKI builds the UKI an image built with opts would carry, sealed
// for the boot image with fs-verity digest composefsID (hex): .cmdline
// "composefs=<id> rw", .osrel the image's os-release, .uname its kernel
// version, and a small made-up kernel and initrd. The boot image's digest
// does not depend on the UKI (it lives under /boot, which the boot
// transform empties), so a test pulls the image without the UKI first,
// takes its boot image id, and generates it again with
// Options.UKI = SealedUKI(..., id).
func SealedUKI(tmp string, opts Options, composefsID string) ([]byte, error) {
	return BuildUKI(tmp, UKIFor(opts, "composefs="+composefsID+" rw"))
}

// UKIFor is the UKISpec SealedUKI uses, with any command line.
func UKIFor(opts Options, cmdline string) UKISpec {
	name, version := opts.Name, opts.Version
	if name == "" {
		name = "cfs-test"
	}
	if version == "" {
		version = "1.0"
	}
	return UKISpec{
		Cmdline:   cmdline,
		OSRelease: osRelease(name, version, opts.OSID),
		Uname:     KernelVersion,
		Linux:     bytes.Repeat([]byte("cfs-kernel "), 400),
		Initrd:    bytes.Repeat([]byte("cfs-initrd "), 300),
	}
}
