package clone

import (
	"fmt"
	"sync/atomic"
)

// Summary counts what ToOstree did. Objects are counted once per entry, so
// two paths with identical content and metadata count one reflink and one
// "present".
type Summary struct {
	Reflinked      int64 `json:"reflinked"`
	ReflinkedBytes int64 `json:"reflinkedBytes"`
	Copied         int64 `json:"copied"`
	CopiedBytes    int64 `json:"copiedBytes"`
	// Present were already in the repository (an earlier clone of this or
	// another image); nothing was read into the repo for them.
	Present      int64 `json:"present"`
	PresentBytes int64 `json:"presentBytes"`
	// Small are files of 64 bytes or less, written from the stream's
	// inline bytes, and empty files.
	// Recorded of the reflinked or present objects were named by the
	// ostree checksum cfs-pull recorded with their composefs object,
	// without reading their bytes (docs/composefs.md).
	Recorded int64  `json:"recorded"`
	Small    int64  `json:"small"`
	Symlinks int64  `json:"symlinks"`
	Entries  int64  `json:"entries"`
	Policy   string `json:"reflink"`
	Repo     string `json:"repo"`
	Mode     string `json:"mode"`
}

func (s *Summary) add(field *int64, n int64) { atomic.AddInt64(field, n) }

// String is the one-line summary cfs-clone prints on stderr.
func (s *Summary) String() string {
	return fmt.Sprintf("%d objects reflinked (%d bytes), %d copied (%d bytes), %d already present (%d bytes), %d named by their recorded checksum, %d small files and %d symlinks written; %d entries, reflink=%s, %s repo %s",
		s.Reflinked, s.ReflinkedBytes, s.Copied, s.CopiedBytes, s.Present, s.PresentBytes, s.Recorded, s.Small, s.Symlinks, s.Entries, s.Policy, s.Mode, s.Repo)
}
