package hoststatus

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestCanonicalJSON(t *testing.T) {
	got, err := CanonicalJSON(struct {
		B string `json:"b"`
		A string `json:"a"`
		N int64  `json:"n"`
	}{"<&>", "x", 1 << 60})
	if err != nil {
		t.Fatal(err)
	}
	// Keys sorted, no HTML escaping, big numbers exact, one line.
	if want := `{"a":"x","b":"<&>","n":1152921504606846976}` + "\n"; string(got) != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestScanStores(t *testing.T) {
	root := t.TempDir()
	objs := filepath.Join(root, "composefs", "objects", "ab")
	if err := os.MkdirAll(objs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"a": 5000, "b": 3} {
		if err := os.WriteFile(filepath.Join(objs, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := ScanStores(context.Background(), root)
	if !s.Composefs.Present || s.Ostree.Present || s.ContainersStorage.Present {
		t.Errorf("presence: %+v", s)
	}
	o := s.Composefs.Objects
	if o == nil || o.Files != 2 || o.Bytes != 5003 || o.Partial || o.Error != "" {
		t.Fatalf("objects: %+v", o)
	}
	if !o.SharingUnknown && o.SharedBytes != 0 {
		t.Errorf("freshly written files share %d bytes", o.SharedBytes)
	}
	// Out of time: the scan stops and says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o := ScanStores(ctx, root).Composefs.Objects; o == nil || !o.Partial || o.Files != 0 {
		t.Errorf("cancelled scan: %+v", o)
	}
}
