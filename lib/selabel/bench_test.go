package selabel

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLookup labels 100k paths with a policy shaped like Fedora's
// targeted one (about 4,000 specifications, most of them one package's
// paths), which is what labelling a large image costs.
func BenchmarkLookup(b *testing.B) {
	var fc strings.Builder
	fc.WriteString("/.*\tdefault_t\n/usr(/.*)?\tusr_t\n/usr/bin(/.*)?\tbin_t\n/usr/lib(/.*)?\tlib_t\n/etc(/.*)?\tetc_t\n/var(/.*)?\tvar_t\n")
	for i := range 1000 {
		fmt.Fprintf(&fc, "/usr/lib/pkg%d(/.*)?\tpkg%d_lib_t\n", i, i)
		fmt.Fprintf(&fc, "/usr/bin/tool%d\t--\ttool%d_exec_t\n", i, i)
		fmt.Fprintf(&fc, "/etc/pkg%d(/.*)?\tpkg%d_conf_t\n", i, i)
		fmt.Fprintf(&fc, "/var/lib/pkg%d(/[^/]*)?\tpkg%d_var_lib_t\n", i, i)
	}
	p, err := Parse("file_contexts", strings.NewReader(fc.String()))
	if err != nil {
		b.Fatal(err)
	}
	paths := make([]string, 0, 100_000)
	for i := range cap(paths) {
		switch i % 4 {
		case 0:
			paths = append(paths, fmt.Sprintf("/usr/lib/pkg%d/sub/file%d.py", i%1500, i))
		case 1:
			paths = append(paths, fmt.Sprintf("/usr/bin/tool%d", i%1500))
		case 2:
			paths = append(paths, fmt.Sprintf("/usr/share/doc/pkg%d/README.%d", i%1500, i))
		default:
			paths = append(paths, fmt.Sprintf("/etc/pkg%d/conf.d/%d.conf", i%1500, i))
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, path := range paths {
			p.Lookup(path, TypeRegular)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
}

// BenchmarkHostPolicy labels every path under /usr with Debian's
// reference policy (make deps installs it): a real policy's shape, with
// the many expressions that begin "/(" and so match anywhere.
func BenchmarkHostPolicy(b *testing.B) {
	dir := "/etc/selinux/default/contexts/files"
	f, err := os.Open(filepath.Join(dir, "file_contexts"))
	if err != nil {
		b.Skip(err)
	}
	p, err := Parse("file_contexts", f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	var paths []string
	var types []byte
	filepath.WalkDir("/usr", func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			paths, types = append(paths, path), append(types, typeCode(d.Type()))
		}
		return nil
	})
	b.ResetTimer()
	for range b.N {
		for i, path := range paths {
			p.Lookup(path, types[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
	b.ReportMetric(float64(len(paths)), "paths")
	b.ReportMetric(float64(p.Len()), "specs")
}
