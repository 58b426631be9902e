// Package testbin builds the cfs commands for tests that run them as a
// user would, with the flags the Makefile uses, whatever the caller's
// environment.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles each package (e.g. "github.com/cfs-project/cfs/cmd/cfs-pull")
// into dir and returns the binary paths by command name. With CFS_RACE=1
// (make test-race) the binaries have the race detector, which needs cgo,
// and leave out containers/storage's btrfs driver, whose cgo headers are
// not installed.
func Build(dir string, pkgs ...string) (map[string]string, error) {
	bins := make(map[string]string, len(pkgs))
	args := []string{"build", "-tags=containers_image_openpgp", "-o", dir + string(filepath.Separator)}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("CFS_RACE") == "1" {
		args = []string{"build", "-race", "-tags=containers_image_openpgp,exclude_graphdriver_btrfs", "-o", dir + string(filepath.Separator)}
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	cmd := exec.Command(goTool(), append(args, pkgs...)...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %v: %v\n%s", pkgs, err, out)
	}
	for _, p := range pkgs {
		bins[filepath.Base(p)] = filepath.Join(dir, filepath.Base(p))
	}
	return bins, nil
}

// goTool finds the go command: on PATH (go test puts its own toolchain's
// bin first there), else where the Go tarball installs it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
