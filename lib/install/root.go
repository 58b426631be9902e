package install

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNotEmpty is wrapped when ROOT holds anything an install could clash
// with.
var ErrNotEmpty = errors.New("not an empty root filesystem")

// allowedTop and allowedBoot are what an empty physical root may hold, as
// bootc install to-filesystem accepts it: the filesystem's lost+found, and
// /boot (often a mount point of its own) holding at most its own
// lost+found, the ESP mount point and a bootloader the caller installed.
var (
	allowedTop  = map[string]bool{"lost+found": true, "boot": true}
	allowedBoot = map[string]bool{"lost+found": true, "efi": true, "EFI": true, "grub": true, "grub2": true}
)

// checkEmpty refuses a ROOT that is not a directory or holds anything
// beyond what allowedTop/allowedBoot let through.
func checkEmpty(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", root)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !allowedTop[e.Name()] {
			return fmt.Errorf("%s: %w: it holds %s", root, ErrNotEmpty, e.Name())
		}
	}
	boot := filepath.Join(root, "boot")
	ents, err = os.ReadDir(boot)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !allowedBoot[e.Name()] {
			return fmt.Errorf("%s: %w: it holds %s", root, ErrNotEmpty, "boot/"+e.Name())
		}
	}
	return nil
}

// mountSource returns the device mounted at dir, "" when dir is not a
// mount point.
func mountSource(dir string) (string, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	src := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				src = unescapeMount(fields[i+2]) // the last mount on dir wins
			}
		}
	}
	return src, sc.Err()
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RootMountSpec is the root= argument bootc gives a root filesystem:
// root=UUID=<uuid> of the filesystem mounted at root, read from the device
// with blkid (which probes the device itself, without udev).
func RootMountSpec(root string) (string, error) {
	uuid, err := fsUUID(root)
	if err != nil {
		return "", fmt.Errorf("%w, so its root= cannot be derived", err)
	}
	return "UUID=" + uuid, nil
}

// fsUUID is the UUID of the filesystem mounted at dir, read from the
// device with blkid (which probes the device itself, without udev).
func fsUUID(dir string) (string, error) {
	dev, err := mountSource(dir)
	if err != nil {
		return "", err
	}
	if dev == "" || !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("%s is not the mount point of a block device", dir)
	}
	out, err := exec.Command("blkid", "-p", "-s", "UUID", "-o", "value", dev).Output()
	uuid := strings.TrimSpace(string(out))
	if err != nil || uuid == "" {
		return "", fmt.Errorf("blkid %s: no filesystem UUID (%v)", dev, err)
	}
	return uuid, nil
}
