package ostree

import (
	"strings"
	"testing"
	"testing/quick"
)

func TestEscapeRefVectors(t *testing.T) {
	cases := map[string]string{
		// ostree-ext's own doc and test vectors (refescape.rs, store.rs).
		"registry:quay.io/coreos/fedora:latest":        "registry_3A_quay_2E_io/coreos/fedora_3A_latest",
		"localhost:5000/foo:latest":                    "localhost_3A_5000/foo_3A_latest",
		"docker://quay.io/example/os:latest":           "docker_3A__2F__2F_quay_2E_io/example/os_3A_latest",
		"containers-storage:localhost/some_image:blah": "containers-storage_3A_localhost/some__image_3A_blah",
		"oci:/var/tmp/x":                               "oci_3A__2F_var/tmp/x",
		"foo/bar/baz-blah/foo":                         "foo/bar/baz-blah/foo",
		"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae": "sha256_3A_2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		"/":     "_2F_",
		"blah/": "blah_2F_",
		"a-/b":  "a-_2F_b",
		"ü":     "_FC_",
	}
	for in, want := range cases {
		got, err := EscapeRef(in)
		if err != nil || got != want {
			t.Errorf("EscapeRef(%q) = %q %v, want %q", in, got, err, want)
		}
		if err := ValidateRefName("p/" + got); err != nil {
			t.Errorf("escaped %q is not a valid ref: %v", in, err)
		}
		back, err := UnescapeRef(got)
		if err != nil || back != in {
			t.Errorf("UnescapeRef(%q) = %q %v", got, back, err)
		}
	}
	blob, _ := BlobRef("sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
	if blob != "ostree/container/blob/sha256_3A_2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" {
		t.Errorf("BlobRef = %s", blob)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if _, err := EscapeRef(bad); err == nil {
			t.Errorf("EscapeRef(%q) accepted", bad)
		}
	}
}

func TestEscapeRefRoundTrip(t *testing.T) {
	f := func(s string) bool {
		esc, err := EscapeRef(s)
		if err != nil {
			return true // empty or NUL: refused, as ostree-ext does
		}
		back, err := UnescapeRef(esc)
		if err != nil || back != s {
			return false
		}
		// ostree-ext passes '-' through unconditionally, so a fragment
		// that starts with one is not a valid ref name there either; we
		// match its bytes rather than inventing another escape.
		if strings.HasPrefix(esc, "-") || strings.Contains(esc, "/-") {
			return ValidateRefName("p/"+esc) != nil
		}
		return ValidateRefName("p/"+esc) == nil
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
}

func TestValidateRefName(t *testing.T) {
	for _, ok := range []string{"a", "ostree/1/1/0", "x_y.z-w", "A/b.c"} {
		if err := ValidateRefName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", ".a", "-a", "a b", "a:b", "ü"} {
		if err := ValidateRefName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// '-' passes through even first, as in ostree-ext, so such a string has
// no valid ref; writing one must fail rather than be escaped differently.
func TestEscapeRefLeadingDash(t *testing.T) {
	esc, err := EscapeRef("-x")
	if err != nil || esc != "-x" {
		t.Fatalf("EscapeRef(-x) = %q, %v; want -x as ostree-ext escapes it", esc, err)
	}
	if ValidateRefName("p/"+esc) == nil {
		t.Errorf("p/%s accepted; ostree refuses a fragment starting with '-'", esc)
	}
}
