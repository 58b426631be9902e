package ostreeimport

import (
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/stream"
)

func TestPlace(t *testing.T) {
	for _, c := range []struct {
		path string
		typ  stream.Type
		want Placement
	}{
		{"/", stream.TypeDir, Keep},
		{"/tmp", stream.TypeDir, Keep},
		{"/tmp", stream.TypeSymlink, Skip},
		{"/tmp/x", stream.TypeFile, Skip},
		{"/dev/null", stream.TypeCharDev, Skip},
		{"/run/a/b", stream.TypeDir, Skip},
		{"/tmpfoo", stream.TypeFile, Keep},
		{"/usr/tmp/x", stream.TypeFile, Keep},
		{"/etc/x", stream.TypeFile, Keep},
	} {
		if got := Place(&stream.Entry{Path: c.path, Type: c.typ}); got != c.want {
			t.Errorf("Place(%s %s) = %v, want %v", c.typ, c.path, got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		e    stream.Entry
		want string
	}{
		{stream.Entry{Type: stream.TypeFifo, Path: "/usr/fifo"}, "fifo cannot be stored"},
		{stream.Entry{Type: stream.TypeSocket, Path: "/dev/log"}, ""},
		{stream.Entry{Type: stream.TypeFile, Path: "/usr/caf\xe9"}, "not UTF-8"},
		{stream.Entry{Type: stream.TypeSymlink, Path: "/usr/l", Target: "\xff"}, "target"},
		{stream.Entry{Type: stream.TypeHardlink, Path: "/usr/h", LinkTo: "/tmp/x"}, "excluded"},
		{stream.Entry{Type: stream.TypeFile, Path: "/usr/ok"}, ""},
	} {
		err := Check(&c.e)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%s %q) = %v, want %q", c.e.Type, c.e.Path, err, c.want)
		}
	}
}

func TestXattrsSELinuxNUL(t *testing.T) {
	in := map[string][]byte{"security.selinux": []byte("a_t"), "user.x": []byte("v")}
	out := Xattrs(in)
	if string(out["security.selinux"]) != "a_t\x00" || string(out["user.x"]) != "v" {
		t.Errorf("Xattrs = %q", out)
	}
	if string(in["security.selinux"]) != "a_t" {
		t.Error("Xattrs modified its input")
	}
	if got := Xattrs(map[string][]byte{"security.selinux": []byte("b_t\x00")}); string(got["security.selinux"]) != "b_t\x00" {
		t.Errorf("a label with its NUL changed: %q", got)
	}
	if Xattrs(nil) != nil {
		t.Error("Xattrs(nil) is not nil")
	}
}

func TestKernelVersion(t *testing.T) {
	for p, want := range map[string]string{
		"/usr/lib/modules/6.1/vmlinuz":        "6.1",
		"/usr/lib/modules/6.1/vmlinuz.old":    "",
		"/usr/lib/modules/6.1/sub/vmlinuz":    "",
		"/usr/lib/modules/vmlinuz":            "",
		"/boot/vmlinuz":                       "",
		"/usr/lib/modules/6.1-x.fc40/vmlinuz": "6.1-x.fc40",
	} {
		got, ok := kernelVersion(p)
		if got != want && ok || ok != (want != "") {
			t.Errorf("kernelVersion(%s) = %q, %v", p, got, ok)
		}
	}
}

func TestReadDocs(t *testing.T) {
	now := time.Unix(1e9, 0)
	img := func(man, cfg string) *stream.Image { return &stream.Image{Manifest: man, Config: cfg} }
	d, err := readDocs(img(`{"annotations":{"org.opencontainers.image.created":"2023-05-06T07:08:09Z"}}`,
		`{"created":"2020-01-01T00:00:00Z","config":{"Labels":{"version":"old","org.opencontainers.image.version":"new"}}}`), now)
	if err != nil || d.created.Unix() != 1683356889 || d.version != "new" {
		t.Errorf("manifest annotation first: %+v %v", d, err)
	}
	d, err = readDocs(img(`{}`, `{"created":"2020-01-01T00:00:00Z","config":{"Labels":{"version":"old"}}}`), now)
	if err != nil || d.created.Unix() != 1577836800 || d.version != "old" {
		t.Errorf("config created: %+v %v", d, err)
	}
	d, err = readDocs(img(`{}`, `{}`), now)
	if err != nil || !d.created.Equal(now) || d.version != "" {
		t.Errorf("no time: %+v %v", d, err)
	}
	if _, err := readDocs(img(`{"annotations":{"org.opencontainers.image.created":"yesterday"}}`, `{}`), now); err == nil {
		t.Error("a bad created annotation was accepted")
	}
}

func TestCommitMetadataSorted(t *testing.T) {
	m := commitMetadata(&stream.Image{Manifest: "m", ManifestDigest: "sha256:x", Config: "c"}, imageDocs{version: "1"}, "6.1")
	var keys []string
	for _, e := range m {
		keys = append(keys, e.Key)
	}
	want := "ostree-ext.composefs-synthesized ostree.bootable ostree.container.image-config ostree.linux ostree.manifest ostree.manifest-digest version"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("keys %s\nwant %s", got, want)
	}
}

func TestResolveRef(t *testing.T) {
	img := &stream.Image{Source: "docker://quay.io/org/os:42"}
	if r, err := resolveRef(img, Options{}); err != nil || r != "ostree/container/image/docker_3A__2F__2F_quay_2E_io/org/os_3A_42" {
		t.Errorf("%q %v", r, err)
	}
	if r, err := resolveRef(img, Options{Ref: "my/ref"}); err != nil || r != "my/ref" {
		t.Errorf("%q %v", r, err)
	}
	if _, err := resolveRef(img, Options{Ref: "bad ref"}); err == nil {
		t.Error("invalid --ref accepted")
	}
	if _, err := resolveRef(&stream.Image{}, Options{}); err == nil {
		t.Error("no source and no ref accepted")
	}
}
