package main

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/stream"
)

// matchpathconType is the -m argument of matchpathcon for a file mode.
func matchpathconType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "lnk_file"
	case m&fs.ModeNamedPipe != 0:
		return "pipe"
	case m&fs.ModeSocket != 0:
		return "sock_file"
	case m&fs.ModeCharDevice != 0:
		return "chr_file"
	case m&fs.ModeDevice != 0:
		return "blk_file"
	}
	return "file"
}

// TestSELinuxLabels pulls an image that ships an SELinux policy through
// cfs-pull | cfs-clone --to ostree | cfs-ostree-import and checks every
// path of the commit against libselinux: matchpathcon, given the image's
// file_contexts and file_contexts.subs_dist, must name the label the
// checked-out file carries (NUL-terminated, as the kernel stores it).
func TestSELinuxLabels(t *testing.T) {
	xfs := testfs.XFS(t, 0)
	testfs.RequireTool(t, "ostree")
	testfs.RequireTool(t, "matchpathcon")
	img, err := testimage.Generate(testimage.Options{Seed: 5, SELinux: true, UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	repo := xfs.Path("repo")
	initRepo(t, repo, "bare")
	list := pullList(t, img, xfs.Path("composefs"))
	_, entries := readList(t, list)
	byPath := map[string]*stream.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	// Hardlinked names with different labels are listed as separate files;
	// names with one label stay links.
	if e := byPath["/usr/sbin/ping-link"]; e == nil || e.Type != stream.TypeFile || string(e.Xattrs["security.selinux"]) != "system_u:object_r:bin_t:s0" {
		t.Errorf("/usr/sbin/ping-link: %+v, want a file labelled bin_t", e)
	}
	if e := byPath["/usr/bin/gzip"]; e == nil || e.Type != stream.TypeHardlink {
		t.Errorf("/usr/bin/gzip: %+v, want a hardlink to gunzip", e)
	}

	im := importInto(t, list, repo)
	fsck(t, repo)
	checkout := xfs.Path("checkout")
	mustRun(t, nil, "ostree", "checkout", "--repo="+repo, im.res.Ref, checkout)

	policy := t.TempDir()
	for name, text := range map[string]string{"file_contexts": testimage.SELinuxFileContexts, "file_contexts.subs_dist": testimage.SELinuxSubsDist} {
		if err := os.WriteFile(filepath.Join(policy, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The image path of each checked-out path, grouped by file type.
	imagePath := map[string]string{}
	byType := map[string][]string{}
	err = filepath.WalkDir(checkout, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, checkout)
		ip := rel
		if rel == "" {
			ip = "/"
		} else if rel == "/usr/etc" || strings.HasPrefix(rel, "/usr/etc/") {
			ip = strings.TrimPrefix(rel, "/usr")
		}
		if strings.ContainsAny(ip, "\n\t") {
			return nil // matchpathcon's output is line- and tab-separated
		}
		imagePath[ip] = p
		typ := matchpathconType(d.Type())
		byType[typ] = append(byType[typ], ip)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for typ, paths := range byType {
		args := append([]string{"-f", filepath.Join(policy, "file_contexts"), "-m", typ}, paths...)
		out := mustRun(t, nil, "matchpathcon", args...)
		sc := bufio.NewScanner(bytes.NewReader(out))
		for i := 0; sc.Scan(); i++ {
			path, want, ok := strings.Cut(sc.Text(), "\t")
			if !ok || i >= len(paths) || path != paths[i] {
				t.Fatalf("matchpathcon line %d: %q, expected path %q", i+1, sc.Text(), paths[i])
			}
			got, err := getLabel(imagePath[path])
			switch {
			case want == "<<none>>" && err == nil:
				t.Errorf("%s (%s): labelled %q, libselinux says unlabelled", path, typ, got)
			case want == "<<none>>":
			case err != nil:
				t.Errorf("%s (%s): %v, libselinux says %s", path, typ, err, want)
			case got != want+"\x00":
				t.Errorf("%s (%s): label %q, libselinux says %q", path, typ, got, want)
			}
			checked++
		}
	}
	if checked < 500 {
		t.Errorf("only %d paths checked", checked)
	}
	t.Logf("%d paths agree with matchpathcon", checked)

	// One object per label: ping-link is its own object now.
	same := func(a, b string) bool {
		x, err1 := os.Lstat(filepath.Join(checkout, a))
		y, err2 := os.Lstat(filepath.Join(checkout, b))
		return err1 == nil && err2 == nil && os.SameFile(x, y)
	}
	if same("usr/bin/ping", "usr/sbin/ping-link") || same("usr/libexec/helper", "usr/share/helper-alias") {
		t.Error("hardlinked names with different labels share one object")
	}
	if !same("usr/bin/gzip", "usr/bin/gunzip") {
		t.Error("hardlinked names with one label are not one object")
	}

	// libostree reads the labels back from the checkout: same ContentChecksum.
	oracle := xfs.Path("oracle")
	initRepo(t, oracle, "bare")
	mustRun(t, nil, "ostree", "commit", "--repo="+oracle, "--tree=dir="+checkout, "-b", "oracle", "--no-bindings", "--timestamp=@1700000000")
	if ours, theirs := contentChecksum(t, repo, im.res.Ref), contentChecksum(t, oracle, "oracle"); ours != theirs {
		t.Errorf("ContentChecksum: ours %s, ostree commit of the checkout %s", ours, theirs)
	}

	// --no-selinux leaves the list as the image has it.
	res := runTool(t, nil, "cfs-pull", "--repo", xfs.Path("composefs"), "--no-selinux", "-q", "--from-repo", img.ManifestDigest.String())
	if res.err != nil {
		t.Fatal(res)
	}
	if bytes.Contains(res.stdout, []byte(`"security.selinux"`)) {
		t.Error("--no-selinux: the list carries labels")
	}
}

func getLabel(path string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, "security.selinux", buf)
	if errors.Is(err, unix.ENODATA) {
		return "", errors.New("no security.selinux")
	}
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
