package stream

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

// jqSort is the jq program docs/stream.md gives for putting entries in
// stream order: by path components, not by the path as a string.
const jqSort = `sort_by(.path | ltrimstr("/") | split("/"))[]`

// TestJqSortsInStreamOrder runs the documented jq line on shuffled entries
// of generated trees whose names sort differently as components and as
// strings ("/a-b" < "/a/b" as strings, but /a's children come first), and
// seals the result: the reader must accept it in exactly the order the
// Writer produced.
func TestJqSortsInStreamOrder(t *testing.T) {
	doc, err := os.ReadFile("../../docs/stream.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte(jqSort)) {
		t.Fatalf("docs/stream.md does not give the jq line %s", jqSort)
	}
	jq, err := exec.LookPath("jq")
	if err != nil {
		t.Skip("jq is not installed")
	}
	names := []string{"a", "b", "a-b", "a.b", "a0", "ab", "A", "é", "a b", "_", "z"}
	rng := rand.New(rand.NewSource(2))
	for round := 0; round < 8; round++ {
		paths := map[string]bool{}
		dirs := []string{"/"}
		for i := 0; i < 60; i++ {
			parent := dirs[rng.Intn(len(dirs))]
			p := strings.TrimSuffix(parent, "/") + "/" + names[rng.Intn(len(names))]
			if !paths[p] {
				paths[p] = rng.Intn(2) == 0
				if paths[p] {
					dirs = append(dirs, p)
				}
			}
		}
		all := []string{"/"}
		for p := range paths {
			all = append(all, p)
		}
		sort.Slice(all, func(i, j int) bool { return lessPath(all[i], all[j]) })
		var entries []*Entry
		for _, p := range all {
			if p == "/" || paths[p] {
				entries = append(entries, &Entry{Type: TypeDir, Path: p, Mode: 0o755})
			} else {
				entries = append(entries, &Entry{Type: TypeFile, Path: p, Mode: 0o644})
			}
		}
		want := lines(t, entries) // image record, then the entries in order
		shuffled := append([]string(nil), want[1:]...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

		cmd := exec.Command(jq, "-c", "-s", jqSort)
		cmd.Stdin = strings.NewReader(strings.Join(shuffled, "\n") + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jq: %v", err)
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if !slices.Equal(got, want[1:]) {
			t.Fatalf("round %d: jq sorted\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want[1:], "\n"))
		}
		var sealed bytes.Buffer
		if _, err := Seal(&sealed, strings.NewReader(want[0]+"\n"+string(out))); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, _, err := ReadAll(&sealed); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}

	// Sorting the paths as strings is not the stream order.
	plain := []string{"/a-b", "/a/b", "/a", "/"}
	sort.Strings(plain)
	if strings.Join(plain, " ") != "/ /a /a-b /a/b" {
		t.Fatalf("sort.Strings gave %v", plain)
	}
}
