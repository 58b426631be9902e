package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallConfigCommand(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "usr", "lib", "bootc", "install")
	os.MkdirAll(dir, 0o755)
	frag := filepath.Join(dir, "00-storage.toml")
	os.WriteFile(frag, []byte("[install.storage]\nunified = \"enabled-with-copy\"\n"), 0o644)

	out, _, err := run(t, "install-config", "--root", root, "--json")
	if err != nil || out != `{"storage":{"unified":"enabled-with-copy"}}`+"\n" {
		t.Fatalf("json: %q %v", out, err)
	}
	out, _, err = run(t, "install-config", "--root", root)
	want := "# merged from, in order:\n#   " + frag + "\n# unified set by " + frag + "\n[install.storage]\nunified = \"enabled-with-copy\"\n"
	if err != nil || out != want {
		t.Fatalf("human: %q %v", out, err)
	}

	empty := t.TempDir()
	if out, _, err = run(t, "install-config", "--root", empty, "--json"); err != nil || out != "{}\n" {
		t.Fatalf("empty json: %q %v", out, err)
	}
	if out, _, err = run(t, "install-config", "--root", empty); err != nil || !strings.Contains(out, "unified = \"disabled\"\n") {
		t.Fatalf("empty human: %q %v", out, err)
	}

	os.WriteFile(frag, []byte("[install.storage]\nunified = \"always\"\n"), 0o644)
	if _, _, err = run(t, "install-config", "--root", root); err == nil ||
		!strings.Contains(err.Error(), frag+": install.storage.unified: invalid value \"always\"") {
		t.Fatalf("invalid: %v", err)
	}
}

func TestHelpExplains(t *testing.T) {
	out, _, err := run(t, "--help")
	if err != nil || !strings.Contains(out, "Storage: ostree-composefs-bound") || !strings.Contains(out, "--cmdline FILE") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, _, err = run(t, "install-config", "--help")
	if err != nil || !strings.Contains(out, "/dev/null") {
		t.Fatalf("%v\n%s", err, out)
	}
}
