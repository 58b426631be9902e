package sysroot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/lib/sysroot"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

// bootc writes BootcRepoMeta with serde_json's pretty printer.
func TestBootcJSONBytesAndAtomicWrite(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "composefs"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []sysroot.Unified{sysroot.UnifiedEnabled, sysroot.UnifiedEnabledWithCopy, sysroot.UnifiedDisabled} {
		if err := sysroot.WriteBootcJSON(root, mode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, "composefs", "bootc.json")
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := "{\n  \"version\": 1,\n  \"unified\": \"" + string(mode) + "\"\n}"
		if string(got) != want {
			t.Errorf("bootc.json = %q, want %q", got, want)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("mode %v", fi.Mode())
		}
		ents, _ := os.ReadDir(filepath.Join(root, "composefs"))
		if len(ents) != 1 {
			t.Errorf("leftovers in composefs/: %v", ents)
		}
		back, ok, err := sysroot.ReadBootcJSON(root)
		if err != nil || !ok || back != mode {
			t.Errorf("read back %q %v %v", back, ok, err)
		}
	}
	if err := sysroot.WriteBootcJSON(root, "on"); err == nil {
		t.Error("wrote an invalid mode")
	}
}

func TestBootcJSONMalformed(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "composefs"), 0o700)
	path := filepath.Join(root, "composefs", "bootc.json")
	for _, bad := range []string{
		``, `{`, `[]`, `{"version":1}`, `{"unified":"enabled"}`, `{"version":2,"unified":"enabled"}`,
		`{"version":1,"unified":"Enabled"}`, `{"version":1,"unified":true}`, `{"version":"1","unified":"enabled"}`,
		`{"version":1,"unified":"enabled"} {}`,
	} {
		os.WriteFile(path, []byte(bad), 0o644)
		_, _, err := sysroot.ReadBootcJSON(root)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
	os.Remove(path)
	if mode, ok, err := sysroot.ReadBootcJSON(root); err != nil || ok || mode != sysroot.UnifiedDisabled {
		t.Errorf("absent: %q %v %v", mode, ok, err)
	}
	// bootc ignores fields it does not know (no deny_unknown_fields).
	os.WriteFile(path, []byte(`{"version":1,"unified":"enabled","future":1}`), 0o644)
	if mode, _, err := sysroot.ReadBootcJSON(root); err != nil || mode != sysroot.UnifiedEnabled {
		t.Errorf("unknown field: %q %v", mode, err)
	}
}

func TestRepoFlag(t *testing.T) {
	h := sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0)
	if set, ok, err := sysroot.ReadRepoFlag(h.Root); err != nil || !ok || set {
		t.Fatalf("fresh repo: %v %v %v", set, ok, err)
	}
	for range 2 { // idempotent
		if err := sysroot.SetRepoFlag(h.Root); err != nil {
			t.Fatal(err)
		}
	}
	config, _ := os.ReadFile(filepath.Join(h.Root, "ostree", "repo", "config"))
	if !strings.HasSuffix(string(config), "\n[composefs]\nunified=true\n") || strings.Count(string(config), "unified") != 1 {
		t.Errorf("config:\n%s", config)
	}
	if set, _, err := sysroot.ReadRepoFlag(h.Root); err != nil || !set {
		t.Fatalf("after set: %v %v", set, err)
	}
	ents, _ := os.ReadDir(filepath.Join(h.Root, "ostree", "repo"))
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp-") {
			t.Errorf("leftover %s", e.Name())
		}
	}
	// A composefs-native host has no repo: the flag reads unset.
	c := sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0, sysroottest.BLS, false)
	if set, ok, err := sysroot.ReadRepoFlag(c.Root); err != nil || ok || set {
		t.Fatalf("composefs host: %v %v %v", set, ok, err)
	}
}

// The states of bootc.md §2.2 and how status reports each (§6).
func TestStorageStates(t *testing.T) {
	type want struct {
		binding  sysroot.Binding
		reported bool
		bound    bool
		line     string
	}
	for _, tc := range []struct {
		name      string
		composefs bool
		repoFlag  bool
		bootcJSON sysroot.Unified // "" = absent
		want      want
	}{
		{"ostree-disabled", false, false, "", want{sysroot.BindingDisabled, false, false, ""}},
		{"ostree-bound-only", false, true, "", want{sysroot.BindingBoundOnly, true, true, "ostree-composefs-bound"}},
		{"ostree-bound-json-disabled", false, true, sysroot.UnifiedDisabled, want{sysroot.BindingBoundOnly, true, true, "ostree-composefs-bound"}},
		{"ostree-json-disabled-only", false, false, sysroot.UnifiedDisabled, want{sysroot.BindingDisabled, false, false, ""}},
		{"ostree-unified", false, true, sysroot.UnifiedEnabled, want{sysroot.BindingUnified, true, true, "unified (enabled)"}},
		{"ostree-unified-copy", false, true, sysroot.UnifiedEnabledWithCopy, want{sysroot.BindingUnified, true, true, "unified (enabled-with-copy)"}},
		// Onboarded by an older bootc: bootc.json, no repo key.
		{"ostree-unified-legacy", false, false, sysroot.UnifiedEnabled, want{sysroot.BindingUnified, true, true, "unified (enabled)"}},
		{"composefs-disabled", true, false, "", want{sysroot.BindingDisabled, false, false, ""}},
		{"composefs-json-disabled", true, false, sysroot.UnifiedDisabled, want{sysroot.BindingDisabled, true, false, ""}},
		{"composefs-unified", true, false, sysroot.UnifiedEnabledWithCopy, want{sysroot.BindingUnified, true, false, "unified (enabled-with-copy)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h *sysroottest.Host
			kind := sysroot.KindOstree
			if tc.composefs {
				kind = sysroot.KindComposefs
				h = sysroottest.Composefs(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0, sysroottest.BLS, false)
			} else {
				h = sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: imgA}}, 0)
				os.Mkdir(filepath.Join(h.Root, "composefs"), 0o700)
			}
			if tc.repoFlag {
				if err := sysroot.SetRepoFlag(h.Root); err != nil {
					t.Fatal(err)
				}
			}
			if tc.bootcJSON != "" {
				if err := sysroot.WriteBootcJSON(h.Root, tc.bootcJSON); err != nil {
					t.Fatal(err)
				}
			}
			host, err := sysroot.Load(h.Root, sysroot.Options{Cmdline: h.Cmdline})
			if err != nil {
				t.Fatal(err)
			}
			s := host.Storage
			got := want{s.Binding, s.Reported(kind), s.Bound(kind), s.StatusLine(kind)}
			if host.Kind != kind || got != tc.want {
				t.Errorf("kind %s: got %+v, want %+v", host.Kind, got, tc.want)
			}
		})
	}
}
