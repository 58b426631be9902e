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
// under an overlayfs with the objects dir as a data-only lower layer.
//
// The EROFS mount is made with the new mount API and never attached
// anywhere: overlayfs finds it through /proc/self/fd, holds its own
// reference, and the descriptor is closed. No temporary directory exists
// at any point, so a process killed half-way leaves nothing behind, and
// Unmount of the mountpoint releases everything.
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
	lower, err := mountErofs(image, !hasACL, opts.Loop)
	if err != nil {
		return err
	}
	defer unix.Close(lower)

	// overlayfs wants a second layer when there is no upper. Without an
	// objects dir an empty, detached tmpfs serves: the redirects find
	// nothing, which is the metadata-only view asked for.
	data := opts.ObjectsDir
	if data == "" {
		empty, err := detachedMount("tmpfs", "", nil)
		if err != nil {
			return fmt.Errorf("mount an empty data layer: %w", err)
		}
		defer unix.Close(empty)
		data = fdPath(empty)
	}
	ovl := "metacopy=on,redirect_dir=on,lowerdir=" + fdPath(lower) + "::" + data
	if opts.Verity {
		ovl += ",verity=require"
	}
	if err := unix.Mount("composefs", mountpoint, "overlay", unix.MS_RDONLY, ovl); err != nil {
		return fmt.Errorf("mount overlay at %s (%s): %w", mountpoint, ovl, err)
	}
	return nil
}

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// detachedMount makes a read-only mount of fstype from source with the
// given flag options, attached nowhere, and returns its descriptor.
func detachedMount(fstype, source string, flags []string) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	defer unix.Close(fs)
	if source != "" {
		if err := unix.FsconfigSetString(fs, "source", source); err != nil {
			return -1, fmt.Errorf("%s source %s: %w", fstype, source, err)
		}
	}
	for _, f := range append([]string{"ro"}, flags...) {
		if err := unix.FsconfigSetFlag(fs, f); err != nil {
			return -1, fmt.Errorf("%s option %s: %w", fstype, f, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return -1, fmt.Errorf("fsmount %s: %w", fstype, err)
	}
	return mnt, nil
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

// mountErofs returns a detached read-only EROFS mount of image.
func mountErofs(image string, noACL, loop bool) (int, error) {
	var flags []string
	if noACL {
		flags = append(flags, "noacl")
	}
	if !loop {
		fd, err := detachedMount("erofs", image, flags)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.ENOTBLK) {
			return -1, fmt.Errorf("mount erofs %s: %w", image, err)
		}
	}
	// Kernels before 6.12 need a block device.
	dev, lf, err := attachLoop(image)
	if err != nil {
		return -1, err
	}
	// With AUTOCLEAR the device is torn down on its last close, so the
	// fd stays open until the mount holds the device.
	defer lf.Close()
	fd, err := detachedMount("erofs", dev, flags)
	if err != nil {
		return -1, fmt.Errorf("mount erofs %s via %s: %w", image, dev, err)
	}
	return fd, nil
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
