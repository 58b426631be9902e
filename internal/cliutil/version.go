package cliutil

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version describes this build from the Go build information: the module
// version, and the VCS revision (marked "modified" for a dirty tree) when
// the binary was built from a checkout.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var extra []string
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		r := "revision " + rev
		if settings["vcs.modified"] == "true" {
			r += " (modified)"
		}
		extra = append(extra, r)
	}
	if t := settings["vcs.time"]; t != "" {
		extra = append(extra, "committed "+t)
	}
	extra = append(extra, bi.GoVersion)
	return fmt.Sprintf("%s (%s)", v, strings.Join(extra, ", "))
}
