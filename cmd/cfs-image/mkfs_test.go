package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/dumpfile"
	"github.com/cfs-project/cfs/lib/erofs"
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

// TestMkfsHardlinks: a directory's hardlinks are separate inodes by
// default, as mkcomposefs makes them, and one inode with --hardlinks.
func TestMkfsHardlinks(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "b"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "b"), filepath.Join(src, "a", "x")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags []string
		want  string // in the dump
	}{
		{nil, "\n/a/x 5 100644 1 "},
		{[]string{"--hardlinks"}, "\n/a/x 5 @100644 2 "},
	} {
		img := filepath.Join(dir, "img")
		args := append(append([]string{"cfs-image", "mkfs"}, c.flags...), src, img)
		app := newApp()
		app.Writer = new(bytes.Buffer)
		if err := app.Run(args); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		im, err := erofs.Read(data)
		if err != nil {
			t.Fatal(err)
		}
		var dump bytes.Buffer
		if err := dumpfile.Write(&dump, im.Root); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(dump.String(), c.want) {
			t.Errorf("mkfs %v: no %q in\n%s", c.flags, c.want, dump.String())
		}
	}
	err := newApp().Run([]string{"cfs-image", "mkfs", "--hardlinks", "--from-dumpfile", "-", filepath.Join(dir, "x")})
	if err == nil || !strings.Contains(err.Error(), "--hardlinks") {
		t.Errorf("--hardlinks with --from-dumpfile: %v", err)
	}
}

// TestMkfsDirFailureLeavesNothing: a directory whose files cannot be
// stored fails with the error and leaves no image, not even a temporary
// one, beside where it would have been.
func TestMkfsDirFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	for _, d := range []string{src, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("x"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "objects")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := cfsImage(t, nil, "mkfs", "--objects", notDir, src, filepath.Join(out, "img"))
	if code != 1 || stdout != "" || !strings.Contains(stderr, "objects") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("mkfs with an objects path that is a file: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}
