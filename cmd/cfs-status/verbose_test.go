package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/cfs-project/cfs/lib/hoststatus"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/reflink"
	"github.com/cfs-project/cfs/lib/sysroot/sysroottest"
)

// On a reflinking XFS, one file shared between the composefs and ostree
// object stores is counted as shared in both; everything else is alone.
func TestVerboseSharing(t *testing.T) {
	fs := testfs.XFS(t, 0)
	root := fs.Path("sysroot")
	h := sysroottest.Ostree(t, root, []sysroottest.Deployment{{Image: current}}, 0)

	const sharedSize, aloneSize = 256 << 10, 12 << 10
	cfsObj := filepath.Join(root, "composefs", "objects", "ab", strings.Repeat("c", 126))
	cfsAlone := filepath.Join(root, "composefs", "objects", "cd", strings.Repeat("d", 126))
	ostreeObj := filepath.Join(root, "ostree", "repo", "objects", "ef", strings.Repeat("e", 62)+".file")
	for _, d := range []string{cfsObj, cfsAlone, ostreeObj} {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "composefs"), 0o700)
	if err := os.WriteFile(cfsObj, bytes.Repeat([]byte("shared!"), sharedSize/7+1)[:sharedSize], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfsAlone, bytes.Repeat([]byte{7}, aloneSize), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reflink.Clone(ostreeObj, cfsObj, reflink.Always); err != nil {
		t.Fatal(err)
	}
	// Flush delayed allocations so FIEMAP sees real extents everywhere.
	if f, err := os.Open(root); err == nil {
		f.Sync()
		f.Close()
	}

	out := status(t, h, "--json", "--verbose")
	var v struct {
		Cfs hoststatus.Stores `json:"cfs"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	s := v.Cfs
	if s.ReflinksSupported == nil || !*s.ReflinksSupported {
		t.Errorf("reflinks: %v %s", s.ReflinksSupported, s.ReflinkError)
	}
	c, o := s.Composefs.Objects, s.Ostree.Objects
	if c == nil || o == nil {
		t.Fatalf("no object stats: %+v", s)
	}
	if c.Files != 2 || c.Bytes != sharedSize+aloneSize || c.SharedBytes != sharedSize || c.AloneBytes != aloneSize {
		t.Errorf("composefs: %+v", c)
	}
	// The ostree repo also holds the fixture's commit, dirtree and dirmeta.
	if o.Files != 4 || o.SharedBytes != sharedSize || o.AloneBytes != o.Bytes-sharedSize {
		t.Errorf("ostree: %+v", o)
	}
	if s.ContainersStorage.Present || !s.Composefs.Present || !s.Ostree.Present || c.Partial || o.Partial {
		t.Errorf("stores: %+v", s)
	}

	human := status(t, h, "--verbose")
	for _, want := range []string{
		"\nStores:\n",
		"  containers-storage: " + filepath.Join(root, "ostree", "bootc", "storage") + " (absent)\n",
		"  composefs:          " + filepath.Join(root, "composefs") + "\n",
		"                      2 objects, 274432 bytes; 262144 bytes shared, 12288 bytes alone\n",
		"  reflinks:           yes\n",
	} {
		if !strings.Contains(human, want) {
			t.Errorf("human output lacks %q:\n%s", want, human)
		}
	}
}

// A scan out of time stops and says so, rather than running on.
func TestVerboseScanLimit(t *testing.T) {
	h := sysroottest.Ostree(t, t.TempDir(), []sysroottest.Deployment{{Image: current}}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	s := hoststatus.ScanStores(ctx, h.Root)
	if s.Ostree.Objects == nil || !s.Ostree.Objects.Partial {
		t.Fatalf("%+v", s.Ostree.Objects)
	}
	human := status(t, h, "--verbose", "--scan-timeout", "1ns")
	if !strings.Contains(human, "(partial: scan time limit reached)") {
		t.Fatalf("%s", human)
	}
}
