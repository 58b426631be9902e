package erofs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountOptions control Mount.
type MountOptions struct {
	// ObjectsDir is the data-only lower layer the image's redirects point
	// into. Empty mounts the metadata only (external files unreadable).
	ObjectsDir string
	// Verity makes overlayfs require fs-verity on every object with the
	// digest recorded in the image (kernel ≥ 6.6 with fs-verity).
	Verity bool
	// Loop mounts the image through a loop device even where the kernel
	// can mount the file directly.
	Loop bool
}

// Mount mounts a composefs image read-only at mountpoint: the image as
// EROFS (file-backed, or through a loop device on kernels before 6.12),
// under an overlayfs with the objects dir as a data-only lower layer. The
// EROFS mount is detached once the overlay holds it, so Unmount of the
// mountpoint releases everything.
func Mount(image, mountpoint string, opts MountOptions) error {
	for _, p := range []string{image, mountpoint, opts.ObjectsDir} {
		// The legacy overlay option string cannot carry these.
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("mount: path %q contains ',', ':' or '\\'", p)
		}
	}
	hasACL, err := imageHasACL(image)
	if err != nil {
		return err
	}
	lower, err := os.MkdirTemp("", "cfs-image-erofs-")
	if err != nil {
		return err
	}
	defer os.Remove(lower)
	erofsOpts := "ro"
	if !hasACL {
		erofsOpts += ",noacl"
	}
	if err := mountErofs(image, lower, erofsOpts, opts.Loop); err != nil {
		return err
	}
	// Once the overlay is up (or failed) the erofs mount is not needed
	// under a name: the overlay keeps its own reference.
	defer unix.Unmount(lower, unix.MNT_DETACH)

	// overlayfs wants a second layer when there is no upper. Without an
	// objects dir an empty one serves: the redirects find nothing, which is
	// the metadata-only view asked for. The overlay pins it, so its name
	// can go once mounted.
	data := opts.ObjectsDir
	if data == "" {
		empty, err := os.MkdirTemp("", "cfs-image-noobjects-")
		if err != nil {
			return err
		}
		defer os.Remove(empty)
		data = empty
	}
	ovl := "metacopy=on,redirect_dir=on,lowerdir=" + lower + "::" + data
	if opts.Verity {
		ovl += ",verity=require"
	}
	if err := unix.Mount("composefs", mountpoint, "overlay", unix.MS_RDONLY, ovl); err != nil {
		return fmt.Errorf("mount overlay at %s (%s): %w", mountpoint, ovl, err)
	}
	return nil
}

// Unmount unmounts a composefs mount made by Mount.
func Unmount(mountpoint string) error {
	if err := unix.Unmount(mountpoint, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", mountpoint, err)
	}
	return nil
}

func imageHasACL(image string) (bool, error) {
	f, err := os.Open(image)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var hdr [16]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return false, fmt.Errorf("%s: %w", image, err)
	}
	if binary.LittleEndian.Uint32(hdr[:]) != composefsMagic {
		return false, fmt.Errorf("%s: not a composefs image", image)
	}
	return binary.LittleEndian.Uint32(hdr[8:])&headerFlagHasACL != 0, nil
}

func mountErofs(image, target, opts string, loop bool) error {
	if !loop {
		err := unix.Mount(image, target, "erofs", unix.MS_RDONLY, opts)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOTBLK) {
			return fmt.Errorf("mount erofs %s: %w", image, err)
		}
	}
	// Kernels before 6.12 need a block device.
	dev, lf, err := attachLoop(image)
	if err != nil {
		return err
	}
	// With AUTOCLEAR the device is torn down on its last close, so the
	// fd stays open until the mount holds the device.
	defer lf.Close()
	if err := unix.Mount(dev, target, "erofs", unix.MS_RDONLY, opts); err != nil {
		return fmt.Errorf("mount erofs %s via %s: %w", image, dev, err)
	}
	return nil
}

// attachLoop binds image to a free loop device that frees itself when the
// filesystem on it is unmounted.
func attachLoop(image string) (string, *os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	defer ctl.Close()
	img, err := os.Open(image)
	if err != nil {
		return "", nil, err
	}
	defer img.Close()
	for tries := 0; tries < 16; tries++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("loop-control: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Size: BlockSize}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			lf.Close()
			continue // raced with another user of the device
		}
		if err != nil {
			lf.Close()
			return "", nil, fmt.Errorf("%s: %w", dev, err)
		}
		return dev, lf, nil
	}
	return "", nil, errors.New("no free loop device")
}
