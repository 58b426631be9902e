package oci

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCapabilityValues checks security.capability against the layouts the
// kernel accepts in setxattr (cap_convert_nscap), and that a layer with
// any other value is refused naming the member.
func TestCapabilityValues(t *testing.T) {
	v3 := "\x01\x00\x00\x03" + capNetRaw[4:] + "\xe8\x03\x00\x00" // root uid 1000
	for value, want := range map[string]string{
		capNetRaw:                            "",
		v3:                                   "",
		"\x00\x00\x00\x02" + capNetRaw[4:]:   "", // not effective
		"c":                                  "is 1 bytes, too short",
		"\x01\x00\x00\x02":                   "revision 2 is 4 bytes, want 20",
		v3[:capSize2]:                        "revision 3 is 20 bytes, want 24",
		capNetRaw + "\x00\x00\x00\x00":       "revision 2 is 24 bytes, want 20",
		"\x01\x00\x00\x01" + capNetRaw[4:12]: "revision 1 (12 bytes) is not one the kernel sets",
		"\x01\x00\x00\x07" + capNetRaw[4:]:   "revision 7 (20 bytes)",
		v3[:capSize2] + "\xff\xff\xff\xff":   "names root uid 4294967295",
	} {
		err := checkCapability([]byte(value))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", value, err, want)
		}
		// The kernel is the oracle: it sets exactly what we accept.
		if os.Geteuid() == 0 {
			f := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(f, nil, 0o755); err != nil {
				t.Fatal(err)
			}
			kerr := unix.Setxattr(f, "security.capability", []byte(value), 0)
			if (kerr == nil) != (err == nil) {
				t.Errorf("%q: the kernel says %v, checkCapability %v", value, kerr, err)
			}
		}
	}

	repo := newRepo(t)
	data := tarOf(t, tm{name: "usr/", typ: tar.TypeDir}, tm{name: "usr/bin/ping", body: "x", xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02"}})
	_, err := importTar(t, repo, data)
	if err == nil || !strings.Contains(err.Error(), `member "usr/bin/ping": /usr/bin/ping: security.capability revision 2 is 4 bytes, want 20`) {
		t.Errorf("layer with a bad capability: %v", err)
	}
}
