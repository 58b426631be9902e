package scripts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testbin"
	"github.com/cfs-project/cfs/internal/testfs"
)

// TestUnitsDocumentation: every service names the man page of the tool it
// runs, and systemd finds that page (as `make man` writes it) when it
// verifies the unit with its man page check on.
func TestUnitsDocumentation(t *testing.T) {
	analyze := testfs.RequireTool(t, "systemd-analyze")
	testfs.RequireTool(t, "man")
	tools := t.TempDir()
	if _, err := testbin.Build(tools, "github.com/cfs-project/cfs/internal/cmd/cfs-manpage"); err != nil {
		t.Fatal(err)
	}
	manDir := filepath.Join(t.TempDir(), "man")
	if err := os.MkdirAll(filepath.Join(manDir, "man8"), 0o755); err != nil {
		t.Fatal(err)
	}
	units, _ := filepath.Glob("../units/*.service")
	if len(units) == 0 {
		t.Fatal("no services")
	}
	dest := t.TempDir()
	os.MkdirAll(filepath.Join(dest, "usr/bin"), 0o755)
	// A unit that works at shutdown has only ExecStop=.
	execStart := regexp.MustCompile(`(?m)^Exec(?:Start|Stop)=/usr/bin/(\S+)`)
	var written []string
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		m := execStart.FindSubmatch(data)
		if m == nil {
			t.Errorf("%s: no ExecStart= or ExecStop=/usr/bin/…", u)
			continue
		}
		tool := string(m[1])
		if !regexp.MustCompile(`(?m)^Documentation=.*\bman:` + regexp.QuoteMeta(tool) + `\(8\)`).Match(data) {
			t.Errorf("%s runs %s but has no Documentation=man:%s(8)", u, tool, tool)
		}
		// The page as make man writes it: a script's from its --help.
		help := sh(t, nil, tool, "--help")
		if help.code != 0 {
			t.Fatalf("%s --help: %d %s", tool, help.code, help.stderr)
		}
		cmd := exec.Command(filepath.Join(tools, "cfs-manpage"), "--name", tool, "--summary", "a summary")
		cmd.Stdin = strings.NewReader(help.stdout)
		page, err := cmd.Output()
		if err != nil || !bytes.HasPrefix(page, []byte(".nh\n.TH "+strings.ToUpper(tool)+" 8")) {
			t.Fatalf("cfs-manpage %s: %v %q", tool, err, page)
		}
		if err := os.WriteFile(filepath.Join(manDir, "man8", tool+".8"), page, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(tool) // a script, or else a built command
		if err != nil {
			src, _ = os.ReadFile(filepath.Join(binDir, tool))
		}
		os.WriteFile(filepath.Join(dest, "usr/bin", tool), src, 0o755)
		data = bytes.ReplaceAll(data, []byte("=/usr/bin/"), []byte("="+dest+"/usr/bin/"))
		p := filepath.Join(dest, filepath.Base(u))
		os.WriteFile(p, data, 0o644)
		written = append(written, p)
	}
	// Verified once all are in place: a unit may require another.
	for _, p := range written {
		r := sh(t, []string{"MANPATH=" + manDir}, analyze, "verify", "--man=true", p)
		if r.code != 0 || strings.TrimSpace(r.stderr) != "" {
			t.Errorf("systemd-analyze verify --man=true %s: exit %d\n%s%s", filepath.Base(p), r.code, r.stdout, r.stderr)
		}
	}
}
