package install

import (
	"strings"
	"testing"
)

func TestParseKargsD(t *testing.T) {
	other := "aarch64"
	if RustArch() == "aarch64" {
		other = "x86_64"
	}
	files := []KargsFile{
		{"20-b.toml", []byte(`kargs = ["console=ttyS1"]`)},
		{"10-a.toml", []byte(`kargs = ["console=tty0 nosmt", "quiet"]`)},
		{"15-other-arch.toml", []byte("kargs = [\"skipme\"]\nmatch-architectures = [\"" + other + "\"]\n")},
		{"16-this-arch.toml", []byte("kargs = [\"mine=\\\"a b\\\"\"]\nmatch-architectures = [\"" + other + "\", \"" + RustArch() + "\"]\n")},
		{"README", []byte("not toml at all")},
	}
	got, err := ParseKargsD(files)
	if err != nil {
		t.Fatal(err)
	}
	want := `console=tty0|nosmt|quiet|mine="a b"|console=ttyS1`
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestParseKargsDRefuses(t *testing.T) {
	for name, data := range map[string]string{
		"unknown key":   "kargs = []\nfoo = 1\n",
		"missing kargs": "match-architectures = [\"x86_64\"]\n",
		"not a list":    "kargs = \"quiet\"\n",
		"malformed":     "kargs = [\n",
	} {
		_, err := ParseKargsD([]KargsFile{{"50-x.toml", []byte(data)}})
		if err == nil || !strings.Contains(err.Error(), "/usr/lib/bootc/kargs.d/50-x.toml") {
			t.Errorf("%s: want an error naming the file, got %v", name, err)
		}
	}
}
