package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/installconfig"
)

// maxConfigFile bounds what is read of one configuration file of the
// image (kargs.d, install config): they are a few lines each.
const maxConfigFile = 1 << 20

// imageTree reads small files from the merged tree of a pulled image.
type imageTree struct {
	repo *composefs.Repository
	root *fstree.Dir
}

// resolve follows symlinks inside the image (never out of it) to the
// inode p names; nil when there is none.
func (t *imageTree) resolve(p string) fstree.Inode {
	for hops := 0; hops < 16; hops++ {
		in, err := t.root.Lookup(p)
		if err != nil {
			return nil
		}
		l, ok := in.(*fstree.Leaf)
		if !ok || l.Kind != fstree.Symlink {
			return in
		}
		target := l.Target
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean("/" + target)
	}
	return nil
}

// readFile reads a regular file of the image, following symlinks inside it.
func (t *imageTree) readFile(p string) ([]byte, error) {
	l, ok := t.resolve(p).(*fstree.Leaf)
	if !ok || l.Kind != fstree.Regular {
		return nil, fmt.Errorf("image %s: not a regular file", p)
	}
	if l.Size > maxConfigFile {
		return nil, fmt.Errorf("image %s: %d bytes is too large for a configuration file", p, l.Size)
	}
	if l.Object == nil {
		return bytes.Clone(l.Inline), nil
	}
	f, err := t.repo.OpenObject(l.Object)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, l.Size+1))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	if int64(len(data)) != l.Size {
		return nil, fmt.Errorf("image %s: object holds %d bytes, the image says %d", p, len(data), l.Size)
	}
	return data, nil
}

// dir lists the names in directory p of the image; none when p is not a
// directory.
func (t *imageTree) dir(p string) []string {
	d, ok := t.resolve(p).(*fstree.Dir)
	if !ok {
		return nil
	}
	return d.Names()
}

// kargs reads the image's kargs.d.
func (t *imageTree) kargs() ([]string, error) {
	var files []KargsFile
	for _, name := range t.dir(KargsDir) {
		if path.Ext(name) != ".toml" {
			continue
		}
		data, err := t.readFile(path.Join(KargsDir, name))
		if err != nil {
			return nil, err
		}
		files = append(files, KargsFile{Name: name, Data: data})
	}
	return ParseKargsD(files)
}

// writeInstallConfig copies the image's install configuration fragments
// (bootc/install/ under /usr/lib, /usr/local/lib, /etc and /run) into
// scratch, keeping a /dev/null symlink as one and resolving every other
// symlink inside the image, so that installconfig reads them with the
// image's own meaning and never a file of the machine installing it.
func (t *imageTree) writeInstallConfig(scratch string) error {
	for _, d := range installconfig.Dirs {
		dir := "/" + d + "/" + installconfig.Subdir
		for _, name := range t.dir(dir) {
			p := path.Join(dir, name)
			dst := filepath.Join(scratch, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if in, _ := t.root.Lookup(p); in != nil {
				if l, ok := in.(*fstree.Leaf); ok && l.Kind == fstree.Symlink && l.Target == "/dev/null" {
					if err := os.Symlink("/dev/null", dst); err != nil {
						return err
					}
					continue
				}
			}
			if _, ok := t.resolve(p).(*fstree.Leaf); !ok {
				continue // a directory or a dangling link: not a fragment
			}
			data, err := t.readFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// installConfig merges the image's install configuration with, when host
// is not "", the installing host's (host winning), and names fragments by
// their path in the image or on the host.
func (t *imageTree) installConfig(host string) (*installconfig.Config, error) {
	scratch, err := os.MkdirTemp("", "cfs-install-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	if err := t.writeInstallConfig(scratch); err != nil {
		return nil, err
	}
	roots := []string{scratch}
	if host != "" {
		roots = append(roots, host)
	}
	cfg, err := installconfig.LoadOf(roots...)
	if err != nil {
		return nil, imagePaths(err, scratch)
	}
	rename := func(p string) string {
		if rel, err := filepath.Rel(scratch, p); err == nil && !filepath.IsAbs(rel) && rel != ".." && !startsDotDot(rel) {
			return "image:/" + filepath.ToSlash(rel)
		}
		return p
	}
	cfg.UnifiedFrom = rename(cfg.UnifiedFrom)
	cfg.EnforceFrom = rename(cfg.EnforceFrom)
	for i, f := range cfg.Fragments {
		cfg.Fragments[i] = rename(f)
	}
	return cfg, nil
}

func startsDotDot(rel string) bool { return len(rel) >= 3 && rel[:3] == "../" }

// imagePaths rewrites the scratch directory in an error message as the
// image the fragment came from.
func imagePaths(err error, scratch string) error {
	msg := err.Error()
	if i := bytes.Index([]byte(msg), []byte(scratch)); i >= 0 {
		return errors.New(msg[:i] + "image:" + msg[i+len(scratch):])
	}
	return err
}
