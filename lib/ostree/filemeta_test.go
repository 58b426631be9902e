package ostree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFileObjectMetaOfOstreeCommit reads back, from objects the real
// `ostree commit` wrote in bare and bare-user repositories, the metadata
// of every regular file of the source tree.
func TestFileObjectMetaOfOstreeCommit(t *testing.T) {
	src, bareRepo := setupRepos(t)
	bareUser := filepath.Join(t.TempDir(), "bare-user")
	ostreeCLI(t, "init", "--repo="+bareUser, "--mode=bare-user")
	ostreeCLI(t, "--repo="+bareUser, "commit", "--tree=dir="+src, "-b", "test")
	for path, mode := range map[string]RepoMode{bareRepo: ModeBare, bareUser: ModeBareUser} {
		repo, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		n := 0
		err = filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			x, err := listXattrs(p)
			if err != nil {
				return err
			}
			want := FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode & permMask, Xattrs: x}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			sum, err := FileChecksum(want, f)
			if err != nil {
				return err
			}
			got, err := repo.FileObjectMeta(sum)
			if err != nil {
				t.Errorf("%s: %s: %v", mode, p, err)
				return nil
			}
			if !SameFileMeta(got, want) {
				t.Errorf("%s: %s: read %v, the file has %v", mode, p, got, want)
			}
			changed := want
			changed.Mode ^= 0o100
			if SameFileMeta(got, changed) {
				t.Errorf("%s: %s: %v and %v compare equal", mode, p, got, changed)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 40 {
			t.Errorf("%s: only %d files checked", mode, n)
		}
		if _, err := repo.FileObjectMeta(strings.Repeat("00", 32)); !errors.Is(err, ErrNoObject) {
			t.Errorf("%s: a missing object: %v", mode, err)
		}
	}
}
