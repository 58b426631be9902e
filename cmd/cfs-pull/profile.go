package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// profileEnv names a file that receives a CPU profile of the command's
// action (go tool pprof format). It is not a flag: it is for measuring
// the pull (docs/performance.md, "Where the CPU of a pull goes"), not
// for users.
const profileEnv = "CFS_PULL_CPUPROFILE"

// startProfile starts the CPU profile profileEnv asks for and returns
// what stops it (a no-op without one). A profile that cannot be started
// is reported and skipped: it never changes what the pull does.
func startProfile(errw io.Writer) (stop func()) {
	path := os.Getenv(profileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(errw, "cfs-pull: %s: %v\n", profileEnv, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(errw, "cfs-pull: %s: %v\n", profileEnv, err)
		}
	}
}
