package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
	"github.com/urfave/cli/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// run runs the command line as a user would, without exiting.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	app := newApp()
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	app.ExitErrHandler = func(*cli.Context, error) {}
	err = app.Run(append([]string{"cfs-status"}, args...))
	return out.String(), errb.String(), err
}

func writeCmdline(t *testing.T, h *sysroottest.Host) string {
	p := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(p, []byte(h.Cmdline+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func status(t *testing.T, h *sysroottest.Host, extra ...string) string {
	t.Helper()
	args := append([]string{"--sysroot", h.Root, "--cmdline", writeCmdline(t, h), "--run-dir", h.RunDir}, extra...)
	out, errOut, err := run(t, args...)
	if err != nil || errOut != "" {
		t.Fatalf("cfs-status %v: %v; stderr %q", args, err, errOut)
	}
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

var (
	// The two images of bootc.md §6's example.
	nightly = sysroottest.Image{Ref: "ostree-unverified-registry:quay.io/example/someimage:latest", Architecture: "arm64",
		Version: "nightly", Created: time.Date(2023, 10, 14, 19, 22, 15, 0, time.UTC)}
	current = sysroottest.Image{Ref: "ostree-unverified-registry:quay.io/example/someimage:latest", Architecture: "arm64"}
	older   = sysroottest.Image{Ref: "ostree-remote-image:fedora:docker://quay.io/fedora/fedora-bootc:41", Architecture: "amd64",
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	local = sysroottest.Image{Ref: "ostree-unverified-image:containers-storage:localhost/bootc-derived", Architecture: "amd64", Version: "42.1"}
)

// bootc.md §6's example, digests spelled out.
func TestHumanMatchesBootcExample(t *testing.T) {
	h := sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: current}, {Image: nightly, Staged: true}}, 0)
	want := "" +
		"  Staged image: quay.io/example/someimage:latest\n" +
		"        Digest: " + nightly.ManifestDigest() + " (arm64)\n" +
		"       Version: nightly (2023-10-14T19:22:15Z)\n" +
		"\n" +
		"● Booted image: quay.io/example/someimage:latest\n" +
		"        Digest: " + current.ManifestDigest() + " (arm64)\n"
	if got := status(t, h); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func ostreeFixture(t *testing.T) *sysroottest.Host {
	return sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: current}, {Image: older}, {Image: nightly, Staged: true}}, 0)
}

func composefsFixture(t *testing.T, boot sysroottest.ComposefsBoot) *sysroottest.Host {
	return sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: local}, {Image: older}, {Image: nightly, Staged: true}}, 0, boot, true)
}

func TestGoldenOstree(t *testing.T) {
	h := ostreeFixture(t)
	golden(t, "ostree-disabled", status(t, h))
	golden(t, "ostree-disabled.json", status(t, h, "--json"))
	if err := sysroot.SetRepoFlag(h.Root); err != nil {
		t.Fatal(err)
	}
	golden(t, "ostree-bound", status(t, h))
	golden(t, "ostree-bound.json", status(t, h, "--json"))
	// The Stores section names temporary paths; TestVerboseSharing checks it.
	verbose := status(t, h, "--verbose")
	golden(t, "ostree-bound-verbose", verbose[:strings.Index(verbose, "\nStores:")+1])
	os.Mkdir(filepath.Join(h.Root, "composefs"), 0o700)
	if err := sysroot.WriteBootcJSON(h.Root, sysroot.UnifiedEnabledWithCopy); err != nil {
		t.Fatal(err)
	}
	golden(t, "ostree-unified", status(t, h))
	golden(t, "ostree-unified.json", status(t, h, "--json"))
}

func TestGoldenComposefs(t *testing.T) {
	for name, boot := range map[string]sysroottest.ComposefsBoot{"bls": sysroottest.BLS, "uki": sysroottest.UKI} {
		t.Run(name, func(t *testing.T) {
			h := composefsFixture(t, boot)
			golden(t, "composefs-"+name, status(t, h))
			golden(t, "composefs-"+name+".json", status(t, h, "--json"))
			if err := sysroot.WriteBootcJSON(h.Root, sysroot.UnifiedEnabled); err != nil {
				t.Fatal(err)
			}
			golden(t, "composefs-"+name+"-unified", status(t, h))
			golden(t, "composefs-"+name+"-unified.json", status(t, h, "--json"))
		})
	}
}

// The Storage line only ever appears in the booted slot, exactly as bootc
// prints it.
func TestStorageLine(t *testing.T) {
	h := ostreeFixture(t)
	count := func(s string) int { return strings.Count(s, "Storage:") }
	if out := status(t, h); count(out) != 0 {
		t.Fatalf("disabled host has a Storage line:\n%s", out)
	}
	sysroot.SetRepoFlag(h.Root)
	out := status(t, h)
	if count(out) != 1 || !strings.Contains(out, "\n       Storage: ostree-composefs-bound\n") {
		t.Fatalf("bound:\n%s", out)
	}
	booted := out[strings.Index(out, "● Booted image"):]
	booted = booted[:strings.Index(booted, "\n\n")]
	if !strings.HasSuffix(booted, "Storage: ostree-composefs-bound") {
		t.Fatalf("Storage is not the booted slot's last row:\n%s", booted)
	}
	os.Mkdir(filepath.Join(h.Root, "composefs"), 0o700)
	sysroot.WriteBootcJSON(h.Root, sysroot.UnifiedEnabled)
	if out := status(t, h); count(out) != 1 || !strings.Contains(out, "\n       Storage: unified (enabled)\n") {
		t.Fatalf("unified:\n%s", out)
	}
}

func TestJSONStorageField(t *testing.T) {
	decode := func(s string) map[string]any {
		var v map[string]any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		return v["status"].(map[string]any)
	}
	h := ostreeFixture(t)
	if st := decode(status(t, h, "--json")); st["storage"] != nil {
		t.Fatalf("storage present on a disabled host: %v", st["storage"])
	}
	sysroot.SetRepoFlag(h.Root)
	st := decode(status(t, h, "--json"))
	if got, _ := json.Marshal(st["storage"]); string(got) != `{"ostreeComposefsBound":true,"unified":"disabled"}` {
		t.Fatalf("bound: %s", got)
	}
	c := composefsFixture(t, sysroottest.BLS)
	if st := decode(status(t, c, "--json")); st["storage"] != nil {
		t.Fatalf("storage present on a composefs host without bootc.json")
	}
	sysroot.WriteBootcJSON(c.Root, sysroot.UnifiedEnabledWithCopy)
	st = decode(status(t, c, "--json"))
	if got, _ := json.Marshal(st["storage"]); string(got) != `{"ostreeComposefsBound":false,"unified":"enabled-with-copy"}` {
		t.Fatalf("composefs unified: %s", got)
	}
}

func TestNotBooted(t *testing.T) {
	h := ostreeFixture(t)
	// Another sysroot without --cmdline: the running kernel's line is not read.
	out, _, err := run(t, "--sysroot", h.Root)
	if err != nil || !strings.HasPrefix(out, "System is not deployed via bootc.\n") || !strings.Contains(out, "   Other image: ") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestErrors(t *testing.T) {
	_, _, err := run(t, "--sysroot", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not a bootc physical root") {
		t.Fatalf("empty dir: %v", err)
	}
	h := ostreeFixture(t)
	bad := filepath.Join(h.Root, "composefs", "bootc.json")
	os.MkdirAll(filepath.Dir(bad), 0o700)
	os.WriteFile(bad, []byte("{"), 0o644)
	if _, _, err := run(t, "--sysroot", h.Root); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("malformed bootc.json: %v", err)
	}
	if _, _, err := run(t, "--sysroot", h.Root, "extra"); err == nil {
		t.Fatal("extra argument accepted")
	}
}
