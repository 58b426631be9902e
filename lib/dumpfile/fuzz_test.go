package dumpfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-project/cfs/lib/erofs"
)

// FuzzParse: the parser rejects, never panics on, any input; what it
// accepts can be written as a dumpfile and an image, and the dumpfile
// parses again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rootLine))
	f.Add([]byte(rootLine + "/a 2 100644 1 0 0 0 5.7 - hi -\n/b 0 @100644 1 0 0 0 5.7 /a - -\n"))
	f.Add([]byte(rootLine + "/c 10 100644 1 0 0 0 0.0 00/11 - - user.x=\\x3d\n/d 0 20000 1 0 0 0 0.0 - - -"))
	files, _ := filepath.Glob("../erofs/testdata/composefs-assets/*.dump")
	if len(files) == 0 {
		f.Fatal("no seeds in ../erofs/testdata/composefs-assets")
	}
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil && len(data) < 10000 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := Parse(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, root); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(&out, "again"); err != nil {
			t.Fatalf("own output rejected: %v\n%s", err, out.String())
		}
		_ = erofs.Write(new(bytes.Buffer), root, erofs.V1)
	})
}
