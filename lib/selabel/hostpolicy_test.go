package selabel

import (
	"bufio"
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
)

// hasMetaChars is libselinux's test (label_file.h, spec_hasMetaChars) for
// a specification that is an expression rather than one exact path.
func hasMetaChars(expr string) bool {
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '.', '^', '$', '?', '*', '+', '|', '[', '(', '{':
			return true
		case '\\':
			i++
		}
	}
	return false
}

// libselinuxOrder rearranges p's specifications as libselinux does before
// a lookup (sort_specs): exact paths behind every expression, each group
// in file order.
func libselinuxOrder(p *Policy) *Policy {
	q := *p
	q.specs = nil
	for _, exact := range []bool{false, true} {
		for _, s := range p.specs {
			if hasMetaChars(s.expr) != exact {
				q.specs = append(q.specs, s)
			}
		}
	}
	q.buildIndex()
	return &q
}

var matchpathconTypes = map[byte]string{TypeRegular: "file", TypeDir: "dir", TypeSymlink: "lnk_file",
	TypeFifo: "pipe", TypeSocket: "sock_file", TypeCharDev: "chr_file", TypeBlockDev: "blk_file"}

func typeCode(m fs.FileMode) byte {
	switch {
	case m.IsDir():
		return TypeDir
	case m&fs.ModeSymlink != 0:
		return TypeSymlink
	case m&fs.ModeNamedPipe != 0:
		return TypeFifo
	case m&fs.ModeSocket != 0:
		return TypeSocket
	case m&fs.ModeCharDevice != 0:
		return TypeCharDev
	case m&fs.ModeDevice != 0:
		return TypeBlockDev
	}
	return TypeRegular
}

// TestHostPolicy checks our regular-expression engine and aliasing on a
// real policy, Debian's reference policy as `make deps` installs it
// (selinux-policy-default; CFS_SELINUX_POLICY_DIR names another
// contexts/files directory): a sample of 20,000 paths of this host under
// /usr, /etc, /var and /opt must get the label matchpathcon gives it once
// the specifications are in libselinux's order. It also checks that the
// composefs-rs order, ours, gives the same labels: a real policy is
// written so that the two orders agree.
func TestHostPolicy(t *testing.T) {
	dir := os.Getenv("CFS_SELINUX_POLICY_DIR")
	if dir == "" {
		dir = "/etc/selinux/default/contexts/files"
	}
	testfs.RequireFile(t, filepath.Join(dir, "file_contexts"), "make deps installs selinux-policy-default")
	testfs.RequireTool(t, "matchpathcon")
	open := func(p string) (io.ReadCloser, error) {
		switch p {
		case ConfigPath:
			return io.NopCloser(strings.NewReader("SELINUXTYPE=host\n")), nil
		}
		return os.Open(filepath.Join(dir, strings.TrimPrefix(p, "/etc/selinux/host/contexts/files/")))
	}
	ours, err := Load(open)
	if err != nil {
		t.Fatal(err)
	}
	// libselinux reads file_contexts.homedirs before .local, composefs-rs
	// after: rebuild the list in libselinux's file order too.
	lib := &Policy{aliases: ours.aliases}
	for _, name := range []string{"file_contexts", "file_contexts.homedirs", "file_contexts.local"} {
		f, err := os.Open(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		err = lib.parseSpecs(name, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	lib = libselinuxOrder(lib)

	// matchpathcon takes about half a millisecond a path with a real
	// policy: a sample of evenly spaced paths keeps this test to seconds.
	type entry struct {
		path string
		typ  byte
	}
	var all []entry
	for _, root := range []string{"/usr", "/etc", "/var", "/opt"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !strings.ContainsAny(p, "\n\t ") {
				all = append(all, entry{p, typeCode(d.Type())})
			}
			return nil
		})
	}
	const sample = 20000
	stride := max(1, len(all)/sample)
	byType := map[byte][]string{}
	total := 0
	for i := 0; i < len(all); i += stride {
		byType[all[i].typ] = append(byType[all[i].typ], all[i].path)
		total++
	}
	var agree, differ int
	for typ, paths := range byType {
		for len(paths) > 0 {
			// Bounded in bytes, not paths: a host with deep paths under
			// /var would otherwise pass the kernel's limit on arguments.
			n, size := 0, 0
			for n < len(paths) && (n == 0 || size+len(paths[n]) < 512<<10) {
				size += len(paths[n]) + 1
				n++
			}
			batch := paths[:n]
			paths = paths[n:]
			out, err := exec.Command("matchpathcon", append([]string{"-f", filepath.Join(dir, "file_contexts"), "-m", matchpathconTypes[typ]}, batch...)...).Output()
			if err != nil {
				t.Fatalf("matchpathcon: %v", err)
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for i := 0; sc.Scan(); i++ {
				path, want, _ := strings.Cut(sc.Text(), "\t")
				if path != batch[i] {
					t.Fatalf("matchpathcon line %q, expected %s", sc.Text(), batch[i])
				}
				if want == "<<none>>" {
					want = ""
				}
				got, _ := lib.Label(path, typ)
				if got != want {
					t.Errorf("%s (%c): %q in libselinux's order, matchpathcon says %q", path, typ, got, want)
				}
				if l, _ := ours.Label(path, typ); l == want {
					agree++
				} else {
					differ++
					if differ <= 10 {
						t.Errorf("%s (%c): %q in the composefs-rs order, matchpathcon says %q", path, typ, l, want)
					}
				}
			}
		}
	}
	t.Logf("%d paths, %d specifications: the composefs-rs order agrees with matchpathcon on %d, differs on %d", total, ours.Len(), agree, differ)
}
