package testfs

import (
	"os"
	"testing"
)

// OpenFDs counts this process's open file descriptors, for tests that
// check a failing or cancelled operation closed what it opened.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
