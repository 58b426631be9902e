package cstorage

import "testing"

func TestParseReference(t *testing.T) {
	for _, c := range []struct {
		in         string
		graph, run string
		image      string
		err        bool
	}{
		{in: "quay.io/org/os:42", image: "quay.io/org/os:42"},
		{in: "[overlay@/g+/r]busybox", graph: "/g", run: "/r", image: "busybox"},
		{in: "[/g+/r]0123abcd", graph: "/g", run: "/r", image: "0123abcd"},
		{in: "[overlay@/g]x", graph: "/g", image: "x"},
		{in: "[vfs@/g+/r]x", err: true},
		{in: "[overlay@/g+/r:overlay.mountopt=nodev]x", err: true},
		{in: "[overlay@/g+/r", err: true},
		{in: "[overlay@/g+/r]", err: true},
		{in: "", err: true},
	} {
		r, err := ParseReference(c.in)
		if c.err {
			if err == nil {
				t.Errorf("%q: no error", c.in)
			}
			continue
		}
		if err != nil || r.GraphRoot != c.graph || r.RunRoot != c.run || r.Image != c.image {
			t.Errorf("%q: %+v %v", c.in, r, err)
		}
	}
}

// TestLayerID pins c/image's layer ID scheme (storage_dest.go layerID):
// the base layer's ID is its diff ID, a child's the sha256 of
// "<parent ID>+<diff ID hex>". The round-trip test checks it against the
// IDs skopeo gives.
func TestLayerID(t *testing.T) {
	const baseHex = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	if got := LayerID("", "sha256:"+baseHex); got != baseHex {
		t.Errorf("base layer ID %s", got)
	}
	// printf '%s' "<base>+000…000" | sha256sum
	const want = "6219749c632559f6cde501edeaeb1b016c34fdcee1c866a1b95e778b02e7f49d"
	if got := LayerID(baseHex, "sha256:0000000000000000000000000000000000000000000000000000000000000000"); got != want {
		t.Errorf("child layer ID %s, want %s", got, want)
	}
}
