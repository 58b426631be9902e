package install

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/pkg/compression"

	"github.com/cfs-project/cfs/lib/installconfig"
	"github.com/cfs-project/cfs/lib/pull"
)

// scannedFragment is a fragment as the layers leave it.
type scannedFragment struct {
	data    []byte
	devNull bool // a symlink to /dev/null: a mask
	other   bool // a symlink elsewhere: resolved after the pull, not here
}

// inConfigDir says whether a layer path (no leading slash) lies in one of
// the install configuration directories, and is a direct child of it.
func inConfigDir(p string) bool {
	for _, d := range installconfig.Dirs {
		dir := d + "/" + installconfig.Subdir
		if path.Dir(p) == dir {
			return true
		}
	}
	return false
}

// scanInstallConfig reads the image's install configuration from its
// layers without storing anything: what ROOT must not see before the
// storage decision is made, on a filesystem where that decision can
// refuse the install. Whiteouts and opaque directories apply as in the
// merged tree. A fragment that is a symlink to anything but /dev/null is
// reported (found is false): only the stored tree can resolve it.
func scanInstallConfig(ctx context.Context, src *pull.Source, scratch string) (found bool, err error) {
	frags := map[string]*scannedFragment{}
	for i, blob := range src.Layers {
		if err := func() error {
			rc, err := src.OpenBlob(ctx, blob)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i, blob.Digest, err)
			}
			defer rc.Close()
			tr, _, err := compression.AutoDecompress(rc)
			if err != nil {
				return fmt.Errorf("layer %s: %w", blob.Digest, err)
			}
			defer tr.Close()
			r := tar.NewReader(tr)
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				h, err := r.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return fmt.Errorf("layer %s: %w", blob.Digest, err)
				}
				p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
				dir, base := path.Split(p)
				dir = strings.TrimSuffix(dir, "/")
				switch {
				case base == ".wh..wh..opq":
					for k := range frags {
						if strings.HasPrefix(k, dir+"/") {
							delete(frags, k)
						}
					}
					continue
				case strings.HasPrefix(base, ".wh."):
					gone := path.Join(dir, strings.TrimPrefix(base, ".wh."))
					for k := range frags {
						if k == gone || strings.HasPrefix(k, gone+"/") {
							delete(frags, k)
						}
					}
					continue
				}
				if h.Typeflag != tar.TypeDir {
					// A file over a directory removes what was below it.
					for k := range frags {
						if strings.HasPrefix(k, p+"/") {
							delete(frags, k)
						}
					}
				}
				if !inConfigDir(p) || strings.HasPrefix(base, ".") || !strings.HasSuffix(base, ".toml") {
					continue
				}
				switch h.Typeflag {
				case tar.TypeReg:
					if h.Size > maxConfigFile {
						return fmt.Errorf("layer %s: /%s: %d bytes is too large for a configuration file", blob.Digest, p, h.Size)
					}
					data, err := io.ReadAll(r)
					if err != nil {
						return fmt.Errorf("layer %s: %w", blob.Digest, err)
					}
					frags[p] = &scannedFragment{data: data}
				case tar.TypeSymlink:
					frags[p] = &scannedFragment{devNull: h.Linkname == "/dev/null", other: h.Linkname != "/dev/null"}
				case tar.TypeLink:
					target := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
					if f, ok := frags[target]; ok {
						frags[p] = f
					} else {
						frags[p] = &scannedFragment{other: true}
					}
				default:
					delete(frags, p)
				}
			}
		}(); err != nil {
			return false, err
		}
	}
	for p, f := range frags {
		if f.other {
			return false, nil
		}
		dst := filepath.Join(scratch, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return false, err
		}
		if f.devNull {
			err = os.Symlink("/dev/null", dst)
		} else {
			err = os.WriteFile(dst, f.data, 0o644)
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}
