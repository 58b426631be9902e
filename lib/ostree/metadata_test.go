package ostree

import (
	"path/filepath"
	"strings"
	"testing"
)

// Every metadata value type we write must be read back by libostree as the
// same typed value (ostree show prints GVariant text), in a commit fsck
// accepts; the keys are the ones bootc reads from a synthesized commit.
func TestCommitMetadataReadByOstree(t *testing.T) {
	requireOstree(t)
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := Create(path, ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	dm, _ := repo.WriteDirMeta(DirMeta{Mode: 0o755})
	tree, _ := repo.WriteDirTree(DirTree{})
	manifest := `{"schemaVersion":2,"layers":[{"digest":"sha256:ab"}]}`
	md := []MetaEntry{
		MetaString("ostree.manifest", manifest),
		MetaString("ostree.manifest-digest", "sha256:"+strings.Repeat("0", 64)),
		MetaString("ostree.container.image-config", `{"architecture":"amd64"}`),
		MetaBool("ostree.bootable", true),
		MetaBool("ostree-ext.composefs-synthesized", true),
		MetaString("version", "42.1"),
		MetaUint64("cfs.count", 5),
		MetaStrings("cfs.list", "a", "b"),
		MetaBytes("cfs.bytes", []byte{1, 2}),
	}
	SortMetadata(md)
	c, err := repo.WriteCommit(Commit{Metadata: md, Subject: "subj", Body: "body", Timestamp: 1700000000, RootTree: tree, RootMeta: dm})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.SetRef("r", c); err != nil {
		t.Fatal(err)
	}
	ostreeCLI(t, "fsck", "--repo="+path)
	want := map[string]string{
		"ostree.manifest":                  "'" + manifest + "'",
		"ostree.bootable":                  "true",
		"ostree-ext.composefs-synthesized": "true",
		"version":                          "'42.1'",
		"cfs.count":                        "uint64 5",
		"cfs.list":                         "['a', 'b']",
		"cfs.bytes":                        "[byte 0x01, 0x02]",
	}
	for k, v := range want {
		got := strings.TrimSpace(ostreeCLI(t, "--repo="+path, "show", "r", "--print-metadata-key="+k))
		if got != v {
			t.Errorf("%s: ostree shows %s, want %s", k, got, v)
		}
	}
	show := ostreeCLI(t, "--repo="+path, "show", "r")
	for _, s := range []string{"Version: 42.1", "Date:  2023-11-14 22:13:20 +0000", "    subj", "    body"} {
		if !strings.Contains(show, s) {
			t.Errorf("ostree show lacks %q:\n%s", s, show)
		}
	}
	parsed, err := repo.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := parsed.Lookup("cfs.count"); !ok {
		t.Error("Lookup cfs.count: missing")
	} else if n, ok := MetaUint64Value(v); !ok || n != 5 {
		t.Errorf("cfs.count = %d (%#v)", n, v)
	}
	for i := 1; i < len(parsed.Metadata); i++ {
		if parsed.Metadata[i-1].Key >= parsed.Metadata[i].Key {
			t.Errorf("metadata not sorted: %s before %s", parsed.Metadata[i-1].Key, parsed.Metadata[i].Key)
		}
	}
}
