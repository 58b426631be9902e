package kargsd

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	other := "aarch64"
	if RustArch() == "aarch64" {
		other = "x86_64"
	}
	files := []File{
		{Name: "20-b.toml", Data: []byte(`kargs = ["console=ttyS1"]`)},
		{Name: "10-a.toml", Data: []byte(`kargs = ["console=tty0 nosmt", "quiet"]`)},
		{Name: "15-other-arch.toml", Data: []byte("kargs = [\"skipme\"]\nmatch-architectures = [\"" + other + "\"]\n")},
		{Name: "16-this-arch.toml", Data: []byte("kargs = [\"mine=\\\"a b\\\"\"]\nmatch-architectures = [\"" + other + "\", \"" + RustArch() + "\"]\n")},
		{Name: "README", Data: []byte("not toml at all")},
	}
	got, err := Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	want := `console=tty0|nosmt|quiet|mine="a b"|console=ttyS1`
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, data := range map[string]string{
		"unknown key":   "kargs = []\nfoo = 1\n",
		"missing kargs": "match-architectures = [\"x86_64\"]\n",
		"not a list":    "kargs = \"quiet\"\n",
		"malformed":     "kargs = [\n",
	} {
		_, err := Parse([]File{{Name: "50-x.toml", Data: []byte(data)}})
		if err == nil || !strings.Contains(err.Error(), "/usr/lib/bootc/kargs.d/50-x.toml") {
			t.Errorf("%s: want an error naming the file, got %v", name, err)
		}
	}
}
