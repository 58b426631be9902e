package clone

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/ostree"
	"github.com/cfs-project/cfs/lib/stream"
)

// recordFixture gives each object of fx the content record rec returns
// (the xattr cfs-pull sets), and returns what the bytes really give.
func recordFixture(t *testing.T, fx *cloneFixture, rec func(i int, prefix, data []byte) composefs.Record) []string {
	t.Helper()
	prefix, err := ostree.ContentPrefix(ostree.FileMeta{Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	var real []string
	for i, e := range fx.entries {
		data, err := os.ReadFile(e.Src)
		if err != nil {
			t.Fatal(err)
		}
		sum, _ := ostree.FileChecksum(ostree.FileMeta{Mode: 0o644}, bytes.NewReader(data))
		real = append(real, sum)
		r := rec(i, prefix, data)
		if err := unix.Setxattr(e.Src, composefs.RecordXattr, composefs.EncodeRecords([]composefs.Record{r}), 0); err != nil {
			t.Fatal(err)
		}
	}
	// The records must be what the bytes give, as cfs-pull writes them.
	return real
}

// honest is the record cfs-pull writes: SHA-256 of the prefix and the bytes.
func honest(_ int, prefix, data []byte) composefs.Record {
	return composefs.Record{Prefix: prefix, Sum: sha256.Sum256(append(append([]byte{}, prefix...), data...))}
}

func cloneOut(t *testing.T, fx *cloneFixture) (*Summary, []*stream.Entry, int64, error) {
	t.Helper()
	repo, err := ostree.Create(fx.fs.Path("repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	var out bytes.Buffer
	before := readChars(t)
	sum, err := ToOstree(context.Background(), repo, bytes.NewReader(fx.list), &out, Options{Workers: 2})
	read := readChars(t) - before
	if err != nil {
		return sum, nil, read, err
	}
	_, entries, err := stream.ReadAll(&out)
	if err != nil {
		t.Fatal(err)
	}
	var files []*stream.Entry
	for _, e := range entries {
		if e.Type == stream.TypeFile {
			files = append(files, e)
		}
	}
	return sum, files, read, nil
}

var recordSizes = []int{5000, 70_000, 1 << 20, 3<<20 + 5}

// A trusted repository's object carrying a content record for the header
// the clone builds is named by the record, and its bytes are not read:
// a record deliberately wrong here (the repository's trust is the test's)
// names the object, which only a clone that takes the record can do.
func TestToOstreeNamesByRecord(t *testing.T) {
	testfs.RequirePrivileged(t)
	fx := newCloneFixture(t, recordSizes, -1, 0o700)
	wrong := sha256.Sum256([]byte("not these bytes"))
	real := recordFixture(t, fx, func(i int, prefix, data []byte) composefs.Record {
		if i == 1 {
			return composefs.Record{Prefix: prefix, Sum: wrong}
		}
		return honest(i, prefix, data)
	})
	sum, files, read, err := cloneOut(t, fx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes of files, %d read", fx.bytes, read)
	if read > fx.bytes/10 {
		t.Errorf("read %d of %d bytes: objects with a record must not be read", read, fx.bytes)
	}
	if sum.Recorded != int64(len(recordSizes)) || sum.Reflinked != int64(len(recordSizes)) {
		t.Errorf("%d named by record, %d reflinked; want %d each", sum.Recorded, sum.Reflinked, len(recordSizes))
	}
	for i, e := range files {
		want := real[i]
		if i == 1 {
			want = hex.EncodeToString(wrong[:])
		}
		if e.Ostree != want {
			t.Errorf("%s: ostree %s, want %s", e.Path, e.Ostree, want)
		}
	}
}

// Records count only on the trusted repository's own objects, and only
// for the header the clone builds: a repository others may write, or a
// record for another owner, mode or xattrs, leaves the clone reading and
// hashing the bytes as before.
func TestToOstreeIgnoresRecords(t *testing.T) {
	testfs.RequirePrivileged(t)
	other, err := ostree.ContentPrefix(ostree.FileMeta{Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	wrong := sha256.Sum256([]byte("not these bytes"))
	for _, c := range []struct {
		name string
		mode os.FileMode
		rec  func(i int, prefix, data []byte) composefs.Record
	}{
		{"untrusted repository", 0o770, func(int, []byte, []byte) composefs.Record {
			p, _ := ostree.ContentPrefix(ostree.FileMeta{Mode: 0o644})
			return composefs.Record{Prefix: p, Sum: wrong}
		}},
		{"other header", 0o700, func(_ int, _, data []byte) composefs.Record {
			return composefs.Record{Prefix: other, Sum: wrong}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newCloneFixture(t, recordSizes, -1, c.mode)
			real := recordFixture(t, fx, c.rec)
			sum, files, read, err := cloneOut(t, fx)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Recorded != 0 {
				t.Errorf("%d objects named by a record", sum.Recorded)
			}
			if read < fx.bytes {
				t.Errorf("read %d of %d bytes: every object must be hashed", read, fx.bytes)
			}
			for i, e := range files {
				if e.Ostree != real[i] {
					t.Errorf("%s: ostree %s, the bytes give %s", e.Path, e.Ostree, real[i])
				}
			}
		})
	}
}
