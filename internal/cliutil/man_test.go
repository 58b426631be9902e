package cliutil

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestManPage(t *testing.T) {
	app := testApp(func(*cli.Context) error { return nil })
	app.UsageText = "cfs-test [options] SOURCE"
	app.Description = "Reads <sysroot>/composefs.\n\n  cfs-test x | cfs-clone --to ostree"
	app.Flags = append(app.Flags, &cli.StringFlag{Name: "tag", Usage: "tag the image with `NAME` instead of localhost/bootc-<digest>"})
	res := run(t.Context(), app, "--man-page")
	if res.code != 0 || !strings.HasPrefix(res.stdout, ".nh\n.TH CFS-TEST 8") {
		t.Fatalf("%+v", res)
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("no groff to render the page")
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=200n")
	cmd.Stdin = strings.NewReader(res.stdout)
	cmd.Env = append(os.Environ(), "GROFF_NO_SGR=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, errb.String())
	}
	text := regexp.MustCompile(".\b").ReplaceAllString(out.String(), "")
	for _, want := range []string{"NAME", "cfs-test - a test command", "SYNOPSIS", "cfs-test [options] SOURCE",
		"Reads <sysroot>/composefs.", "  cfs-test x | cfs-clone --to ostree",
		"--sysroot=DIR", "--repo=VALUE", "(default: /sysroot)", "--tag=NAME", "localhost/bootc-<digest>", "COMMANDS", "sub",
		"EXIT STATUS", "130", "interrupted by SIGINT or SIGTERM", "SEE ALSO", "cfs-pull(8)"} {
		if !strings.Contains(text, want) {
			t.Errorf("man page lacks %q:\n%s", want, text)
		}
	}
}

// docs/cli.md lists the same exit statuses as the code.
func TestDocsListExitCodes(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ExitCodes {
		row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(strconv.Itoa(e.Code)) + ` +\|`)
		if !row.Match(doc) {
			t.Errorf("docs/cli.md has no table row for exit status %d (%s)", e.Code, e.Meaning)
		}
	}
}

func TestTextManPage(t *testing.T) {
	help := "Usage: cfs-x [--a DIR]\n             [--b]\n\nDoes x.\n\n  --a DIR   the dir <here>\n"
	page := TextManPage("cfs-x", "do x", help)
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("no groff to render the page")
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=200n")
	cmd.Stdin = strings.NewReader(page)
	cmd.Env = append(os.Environ(), "GROFF_NO_SGR=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, errb.String())
	}
	text := regexp.MustCompile(".\b").ReplaceAllString(out.String(), "")
	for _, want := range []string{"cfs-x - do x", "cfs-x [--a DIR]\n", "             [--b]", "Does x.", "  --a DIR   the dir <here>", "cfs-upgrade(8)"} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Usage:") {
		t.Errorf("SYNOPSIS keeps the Usage: prefix:\n%s", text)
	}
}
