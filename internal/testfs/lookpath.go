package testfs

import "os/exec"

// lookPath also searches the sbin directories, which are not on PATH for
// every user but hold mkfs.*, losetup and fsck.erofs.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p, err := exec.LookPath(dir + "/" + name); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}
