package cliutil

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var stringPathFlag = regexp.MustCompile("&cli.StringFlag\\{Name: \"([a-z-]+)\"[^\n]*`(?:DIR|FILE)`")

// Every command runs through the runner, from a newApp that tests can run
// in process (docs/cli.md); none handles its own exit or signals.
func TestEveryCommandUsesTheRunner(t *testing.T) {
	mains, err := filepath.Glob("../../cmd/*/main.go")
	if err != nil || len(mains) == 0 {
		t.Fatalf("no commands: %v", err)
	}
	for _, m := range mains {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		src := string(data)
		for _, want := range []string{"cliutil.Main(newApp())", "func newApp() *cli.App"} {
			if !strings.Contains(src, want) {
				t.Errorf("%s lacks %q", m, want)
			}
		}
	}
	files, _ := filepath.Glob("../../cmd/*/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A path flag is a cli.PathFlag, so that the runner makes it
		// absolute. --output's "-" and "none" are keywords; its file is
		// opened at once in the caller's directory.
		for _, m := range stringPathFlag.FindAllStringSubmatch(string(data), -1) {
			if m[1] != "output" {
				t.Errorf("%s: --%s takes a path but is a StringFlag, not a PathFlag", f, m[1])
			}
		}
		for _, bad := range []string{"os.Exit(", "signal.Notify", "os.Stdin", "os.Stdout", "os.Stderr"} {
			if strings.Contains(string(data), bad) {
				t.Errorf("%s uses %s: the runner and the app's Reader/Writer do that", f, bad)
			}
		}
	}
}
