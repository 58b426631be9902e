package erofs_test

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// externalsOfTree lists, one line per inode, the (object, size) of every
// external regular file of Read's tree: the canonical nodes only, as the
// callers of ForEachExternal used to walk it.
func externalsOfTree(root *erofs.Node) []string {
	var out []string
	var walk func(n *erofs.Node)
	walk = func(n *erofs.Node) {
		if n.LinkTo == nil && n.Payload != "" && n.Mode&erofs.TypeMask == erofs.TypeRegular {
			out = append(out, fmt.Sprintf("%s %d", n.Payload, n.Size))
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(root)
	sort.Strings(out)
	return out
}

func externalsStreamed(data []byte) ([]string, error) {
	var out []string
	err := erofs.ForEachExternal(data, func(obj string, size int64) error {
		out = append(out, fmt.Sprintf("%s %d", obj, size))
		return nil
	})
	sort.Strings(out)
	return out, err
}

func sameExternals(t testing.TB, what string, data []byte) int {
	t.Helper()
	want := externalsOfTree(readImage(t, data).Root)
	got, err := externalsStreamed(data)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: ForEachExternal gives %d entries, Read's tree %d\n got %.300v\nwant %.300v", what, len(got), len(want), got, want)
	}
	return len(got)
}

// TestForEachExternal: on the mkcomposefs vector images and on generated
// trees with hardlinks, symlinks, whiteouts, inline and external files,
// the streaming walk yields exactly the (object, size) multiset of Read.
func TestForEachExternal(t *testing.T) {
	total := 0
	for _, a := range assets(t) {
		total += sameExternals(t, a.name, buildImage(t, parseDump(t, readAsset(t, a.path), a.name), assetOptions(t, a.path)))
	}
	if total == 0 {
		t.Fatal("no asset has an external file: the comparison proves nothing")
	}
	for _, v := range []erofs.Options{erofs.V1, {Version: 0, MaxVersion: 0}} {
		root := genTree(t, 3, 3000)
		links := 0
		_ = erofs.Walk(root, func(_ string, n *erofs.Node) error {
			if n.LinkTo != nil && n.LinkTo.Payload != "" {
				links++
			}
			return nil
		})
		if links == 0 {
			t.Fatal("generated tree has no hardlink to an external file")
		}
		if n := sameExternals(t, fmt.Sprintf("generated v%d", v.Version), buildImage(t, root, v)); n < 100 {
			t.Fatalf("only %d external files", n)
		}
	}
}

// TestForEachExternalErrors: fn's error stops the walk and comes back as
// is; a damaged image is rejected with Read's error.
func TestForEachExternalErrors(t *testing.T) {
	img := buildImage(t, genTree(t, 4, 300), erofs.V1)
	stop := errors.New("stop")
	calls := 0
	if err := erofs.ForEachExternal(img, func(string, int64) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("err %v after %d calls, want stop after 1", err, calls)
	}
	bad := append([]byte{}, img...)
	bad[1024+14], bad[1024+15] = 0xff, 0xff // root nid far outside the image
	_, rerr := erofs.Read(bad)
	err := erofs.ForEachExternal(bad, func(string, int64) error { return nil })
	if err == nil || rerr == nil || err.Error() != rerr.Error() || !errors.Is(err, erofs.ErrFormat) {
		t.Fatalf("ForEachExternal: %v; Read: %v", err, rerr)
	}
	if err := erofs.ForEachExternal(img[:len(img)/2], func(string, int64) error { return nil }); !errors.Is(err, erofs.ErrFormat) {
		t.Fatalf("truncated image: %v", err)
	}
}
