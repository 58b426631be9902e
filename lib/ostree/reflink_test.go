package ostree

import (
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/lib/reflink"
	"golang.org/x/sys/unix"
)

// The point of the project: an object FICLONEd into the repo through
// WriteFileObject shares its extents with the source and is still a valid
// object for fsck and checkout (O_TMPFILE, metadata, linkat all on XFS).
func TestReflinkedObjectsOnXFS(t *testing.T) {
	requireOstree(t)
	fs := testfs.XFS(t, 0)
	src := fs.Path("src-object")
	data := make([]byte, 1<<20+123)
	rand.New(rand.NewSource(2)).Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []RepoMode{ModeBare, ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			path := fs.Path("repo-" + string(mode))
			repo, err := Create(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			meta := FileMeta{UID: 0, GID: 0, Mode: 0o755, Xattrs: map[string][]byte{"trusted.k": []byte("v")}}
			csum, created, err := repo.WriteFileObject(meta, func(tmp *os.File) error {
				s, err := os.Open(src)
				if err != nil {
					return err
				}
				defer s.Close()
				return unix.IoctlFileClone(int(tmp.Fd()), int(s.Fd()))
			}, "", 0)
			if err != nil || !created {
				t.Fatalf("created=%v err=%v", created, err)
			}
			want, _ := FileChecksum(meta, strings.NewReader(string(data)))
			if csum != want {
				t.Errorf("checksum %s, want %s", csum, want)
			}
			if err := repo.Flush(); err != nil {
				t.Fatal(err)
			}
			obj, err := os.Open(filepath.Join(path, ObjectPath(csum, ObjectFile)))
			if err != nil {
				t.Fatal(err)
			}
			shared, total, err := reflink.SharedBytes(obj)
			obj.Close()
			if err != nil || total != int64(len(data)) || shared < total-4096 {
				t.Errorf("object shares %d of %d bytes (%v)", shared, total, err)
			}
			dm, _ := repo.WriteDirMeta(DirMeta{Mode: 0o755})
			tree, _ := repo.WriteDirTree(DirTree{Files: []DirTreeFile{{"bin", csum}}})
			c, err := repo.WriteCommit(Commit{RootTree: tree, RootMeta: dm, Timestamp: 1})
			if err != nil {
				t.Fatal(err)
			}
			if err := repo.SetRef("r", c); err != nil {
				t.Fatal(err)
			}
			ostreeCLI(t, "fsck", "--repo="+path)
			if got := ostreeCLI(t, "--repo="+path, "cat", "r", "/bin"); got != string(data) {
				t.Error("ostree cat gives different bytes")
			}
		})
	}
}
