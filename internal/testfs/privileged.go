// Package testfs gives tests real filesystems to work on: loop-mounted XFS
// (reflink=1), btrfs and ext4 images, and tmpfs, each torn down exactly as it
// was made.
package testfs

import (
	"os"
	"testing"
)

// RequirePrivileged skips t unless the test runs as root. When
// CFS_REQUIRE_PRIVILEGED=1 (as in CI) the skip becomes a failure, so a
// privileged test can never pass silently by not running.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CFS_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("this test needs root and CFS_REQUIRE_PRIVILEGED=1 forbids skipping it")
	}
	t.Skip("needs root (set CFS_REQUIRE_PRIVILEGED=1 to make this a failure)")
}

// RequireTool fails or skips t like RequirePrivileged when an external
// program the test uses as an oracle is not installed.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := lookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CFS_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("%s is not installed (run `make deps`); CFS_REQUIRE_PRIVILEGED=1 forbids skipping", name)
	}
	t.Skipf("%s is not installed (run `make deps`)", name)
	return ""
}

// RequireFile fails or skips t like RequireTool when a file an oracle needs
// (a policy a package installs, say) is missing; hint says how to get it.
func RequireFile(t testing.TB, path, hint string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("CFS_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("%s is missing (%s); CFS_REQUIRE_PRIVILEGED=1 forbids skipping", path, hint)
	}
	t.Skipf("%s is missing (%s)", path, hint)
}
