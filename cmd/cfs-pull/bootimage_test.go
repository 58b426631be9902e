package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testimage"
	"github.com/cfs-project/cfs/lib/pull"
)

// TestBootImageReported: a bootable image's pull names its boot image in
// the --json summary and in the human lines, while the object list keeps
// the image's /boot and /sysroot (only the boot image drops them); an
// image that cannot get one says why.
func TestBootImageReported(t *testing.T) {
	_, src := ociLayout(t, testimage.Options{Seed: 21, Bootable: true})
	repo := filepath.Join(t.TempDir(), "composefs")
	code, out, stderr := cfsPullIn("--repo", repo, "--insecure-policy", "--json", src)
	if code != 0 {
		t.Fatalf("pull: %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var sum pull.Summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{128}$`).MatchString(sum.BootImage) || sum.BootImage == sum.Image || sum.BootNote != "" {
		t.Errorf("--json summary: boot image %q, image %q, note %q", sum.BootImage, sum.Image, sum.BootNote)
	}
	_, entries := readList(t, out)
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Path] = true
	}
	if !seen["/boot/grub2/grub.cfg"] || !seen["/sysroot/ostree"] {
		t.Error("the object list lost /boot or /sysroot content to the boot transform")
	}

	code, _, stderr = cfsPullIn("--repo", repo, "--insecure-policy", "-o", "none", src)
	if code != 0 || !strings.Contains(stderr, "cfs-pull: boot image "+sum.BootImage) {
		t.Errorf("human summary (%d):\n%s", code, stderr)
	}

	_, plain := ociLayout(t, testimage.Options{Seed: 21})
	code, _, stderr = cfsPullIn("--repo", repo, "--insecure-policy", "-o", "none", plain)
	if code != 0 || !strings.Contains(stderr, "cfs-pull: note: no boot image: a bootable image needs /boot and /sysroot directories: /boot is missing") {
		t.Errorf("an image without /boot (%d):\n%s", code, stderr)
	}
}
