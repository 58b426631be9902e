// Package lib_test enforces the layering of the libraries, as
// go-containerregistry's depcheck does: the object-list package and the
// bootc conventions use only the standard library, so any producer can
// vendor them, and no library reaches up into the commands' CLI
// framework or the repository's internal test helpers.
package lib_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cfs-project/cfs/"

// goList runs `go list` with the build flags of the test run (the
// Makefile exports GOFLAGS and CGO_ENABLED).
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	// go test puts its own toolchain's bin first on PATH.
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", args, err, msg)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestStandardLibraryOnly(t *testing.T) {
	for _, pkg := range []string{"./lib/stream", "./lib/bootcconv"} {
		for _, line := range goList(t, "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg) {
			path, std, _ := strings.Cut(line, " ")
			if std != "true" && module+strings.TrimPrefix(pkg, "./") != path {
				t.Errorf("%s depends on %s, which is not in the standard library", pkg, path)
			}
		}
	}
}

func TestLibrariesStayBelowCommands(t *testing.T) {
	forbidden := []string{"github.com/urfave/cli", module + "internal/", module + "cmd/"}
	lines := goList(t, "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "./lib/...")
	if len(lines) < 10 {
		t.Fatalf("go list found only %d packages under lib/", len(lines))
	}
	for _, line := range lines {
		deps := strings.Fields(line)
		for _, d := range deps[1:] {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s", deps[0], d)
				}
			}
		}
	}
}
