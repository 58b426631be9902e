package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMkfsBadDumpfile: bad input gets an error naming the line and leaves
// no output file behind.
func TestMkfsBadDumpfile(t *testing.T) {
	const root = "/ 0 40755 2 0 0 0 0.0 - - -\n"
	cases := map[string]string{
		"dotdot":          root + "/.. 0 100644 1 0 0 0 0.0 - - -\n",
		"dir-hardlink":    root + "/d 0 40755 2 0 0 0 0.0 - - -\n/l 0 @100644 1 0 0 0 0.0 /d - -\n",
		"missing-parent":  root + "/x/y 0 100644 1 0 0 0 0.0 - - -\n",
		"xattr-too-large": root + "/f 0 100644 1 0 0 0 0.0 - - - user.a=" + strings.Repeat("v", 33000) + "\n",
		"slash-in-name":   root + "/a\\x2f 0 100644 1 0 0 0 0.0 - - -\n",
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			src, img := filepath.Join(dir, "in.dump"), filepath.Join(dir, "out.cfs")
			if err := os.WriteFile(src, []byte(input), 0o644); err != nil {
				t.Fatal(err)
			}
			err := newApp().Run([]string{"cfs-image", "mkfs", "--from-dumpfile", src, img})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "in.dump:") {
				t.Errorf("error does not name the file and line: %v", err)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("left files behind: %v", ents)
			}
		})
	}
}

// TestMkfsDumpRoundTrip: mkfs --from-dumpfile then dump gives the
// dumpfile back.
func TestMkfsDumpRoundTrip(t *testing.T) {
	const in = "/ 4096 40755 2 0 0 0 5.5 - - -\n/a 2 100644 1 7 8 0 5.5 - hi -\n"
	dir := t.TempDir()
	src, img, out := filepath.Join(dir, "in.dump"), filepath.Join(dir, "img"), filepath.Join(dir, "out.dump")
	if err := os.WriteFile(src, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := newApp().Run([]string{"cfs-image", "mkfs", "--from-dumpfile", "--digest-algo", "sha256", src, img}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = f
	err = newApp().Run([]string{"cfs-image", "dump", img})
	os.Stdout = stdout
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != in {
		t.Errorf("dump = %q, want %q", got, in)
	}
}
