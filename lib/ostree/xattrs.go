package ostree

import (
	"fmt"
	"sort"
	"strings"
)

// Xattr is one extended attribute as ostree records it: the value is the
// raw bytes getxattr returns (an SELinux label keeps its trailing NUL).
type Xattr struct {
	Name  string
	Value []byte
}

// canonicalXattrs turns a map into ostree's canonical list: sorted by name
// bytewise (strcmp), and without zero-length values, because libostree
// never sees those (libglnx skips them when reading a file's xattrs) and
// fsck on a bare repo re-reads them from disk the same way.
func canonicalXattrs(m map[string][]byte) ([]Xattr, error) {
	out := make([]Xattr, 0, len(m))
	for name, value := range m {
		if name == "" || strings.IndexByte(name, 0) >= 0 {
			return nil, fmt.Errorf("invalid xattr name %q", name)
		}
		if len(value) == 0 {
			continue
		}
		out = append(out, Xattr{Name: name, Value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// xattrsValue is the a(ayay) value; names are GVariant bytestrings, so
// they carry a trailing NUL while values are stored as they are.
func xattrsValue(xs []Xattr) []any {
	v := make([]any, len(xs))
	for i, x := range xs {
		v[i] = []any{append([]byte(x.Name), 0), x.Value}
	}
	return v
}

func xattrsFromValue(v any) ([]Xattr, error) {
	items, _ := v.([]any)
	out := make([]Xattr, 0, len(items))
	for _, it := range items {
		pair := it.([]any)
		name := pair[0].([]byte)
		if len(name) == 0 || name[len(name)-1] != 0 {
			return nil, fmt.Errorf("xattr name %q is not NUL-terminated", name)
		}
		out = append(out, Xattr{Name: string(name[:len(name)-1]), Value: pair[1].([]byte)})
	}
	return out, nil
}

// XattrMap is the inverse of the canonical list, for callers that compare
// against what they read from disk.
func XattrMap(xs []Xattr) map[string][]byte {
	m := make(map[string][]byte, len(xs))
	for _, x := range xs {
		m[x.Name] = x.Value
	}
	return m
}
