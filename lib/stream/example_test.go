package stream_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cfs-project/cfs/lib/stream"
)

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// exampleImage is an image record; Manifest and Config are the exact
// registry documents, and their digests must match them.
func exampleImage() *stream.Image {
	manifest := `{"schemaVersion":2}`
	config := `{"architecture":"amd64","os":"linux"}`
	return &stream.Image{
		ManifestDigest: digest(manifest), Manifest: manifest,
		ConfigDigest: digest(config), Config: config,
		Layers: []stream.Layer{{Digest: digest("layer blob"), DiffID: digest("layer tar")}},
	}
}

// A producer writes the image record, then the tree in pre-order with
// sorted siblings; Close seals the list with its end record. Every rule a
// reader applies is applied here too, so a bad list fails where it is made.
func ExampleWriter() {
	w := stream.NewWriter(os.Stdout)
	if err := w.WriteImage(exampleImage()); err != nil {
		panic(err)
	}
	for _, e := range []*stream.Entry{
		{Type: stream.TypeDir, Path: "/", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/etc", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/etc/hostname", Mode: 0o644, Size: 5, Inline: []byte("host\n")},
		{Type: stream.TypeSymlink, Path: "/lib", Mode: 0o777, Target: "usr/lib"},
	} {
		if err := w.WriteEntry(e); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	// Output:
	// {"type":"image","version":1,"manifestDigest":"sha256:bafebd36189ad3688b7b3915ea55d461e0bfcfbdde11e54b0a123999fb6be50f","configDigest":"sha256:9d99a75171aea000c711b34c0e5e3f28d3d537dd99d110eafbfbc2bd8e52c2bf","manifest":"{\"schemaVersion\":2}","config":"{\"architecture\":\"amd64\",\"os\":\"linux\"}","layers":[{"digest":"sha256:c6c82323a6f7b56aa719a605ede3151439de8c5dad920dabe15dfcb39807f87b","diffID":"sha256:7032f8a71fd3f4e90f2ddc78a90b6987443002b76c910693c388529dc22daf2b"}],"stores":{}}
	// {"type":"dir","path":"/","mode":493,"uid":0,"gid":0,"mtime":0}
	// {"type":"dir","path":"/etc","mode":493,"uid":0,"gid":0,"mtime":0}
	// {"type":"file","path":"/etc/hostname","mode":420,"uid":0,"gid":0,"mtime":0,"size":5,"inline":"aG9zdAo="}
	// {"type":"symlink","path":"/lib","target":"usr/lib","mode":511,"uid":0,"gid":0,"mtime":0}
	// {"type":"end","entries":4,"bytes":815,"sha256":"66c01391ec00424978576439fd93d8d8d055b28ac2babf91235cff31dd3c08c5"}
}

// A consumer reads the image record, then entries until io.EOF, which
// Next returns only after the end record checked out: nothing read may be
// made durable before that. Closed says which directories are complete.
func ExampleReader() {
	var list bytes.Buffer
	w := stream.NewWriter(&list)
	w.WriteImage(exampleImage())
	for _, e := range []*stream.Entry{
		{Type: stream.TypeDir, Path: "/", Mode: 0o755},
		{Type: stream.TypeDir, Path: "/a", Mode: 0o755},
		{Type: stream.TypeFile, Path: "/a/b", Mode: 0o644},
		{Type: stream.TypeFile, Path: "/a-b", Mode: 0o644},
	} {
		w.WriteEntry(e)
	}
	w.Close()

	r := stream.NewReader(&list)
	img, err := r.Image()
	if err != nil {
		panic(err)
	}
	fmt.Println("image", img.ManifestDigest[:19])
	for {
		e, err := r.Next()
		if err == io.EOF {
			fmt.Println("end: directories complete:", strings.Join(r.Closed(), " "))
			break
		}
		if err != nil {
			panic(err)
		}
		if c := r.Closed(); len(c) > 0 {
			fmt.Println("complete:", strings.Join(c, " "))
		}
		fmt.Printf("%s %s %#o\n", e.Type, e.Path, e.Mode)
	}
	// Output:
	// image sha256:bafebd36189a
	// dir / 0755
	// dir /a 0755
	// file /a/b 0644
	// complete: /a
	// file /a-b 0644
	// end: directories complete: /
}
