package composefs

import (
	"fmt"
	"os"

	"github.com/cfs-project/cfs/lib/reflink"
)

// Pending is an object whose bytes are in place but whose digest the
// caller computes itself, by reading File once for whatever else it needs
// from the same bytes (a CRC, a tar digest). It becomes an object with
// Commit or is dropped with Discard.
type Pending struct {
	r *Repository
	t *tmpFile
}

// CloneObject starts an object with the content of src, sharing its
// extents by FICLONE under the given policy. Nothing is named until Commit.
func (r *Repository) CloneObject(src *os.File, policy reflink.Policy) (*Pending, reflink.Result, error) {
	t, err := r.newTemp()
	if err != nil {
		return nil, 0, err
	}
	how, err := reflink.CloneFile(t.File, src, policy)
	if err != nil {
		t.discard()
		return nil, 0, err
	}
	return &Pending{r: r, t: t}, how, nil
}

// File is the object's content, to read with ReadAt (or from offset 0).
func (p *Pending) File() *os.File { return p.t.File }

// Commit queues the object under id, the fs-verity digest the caller
// computed over File's bytes; where the kernel measures fs-verity it
// checks id too. Like every object it is named at the repository's next
// Flush, once its bytes are durable. An intact object that already exists
// is kept and reported as not created.
func (p *Pending) Commit(id []byte) (created bool, err error) {
	st, err := p.t.Stat()
	if err != nil {
		p.t.discard()
		return false, fmt.Errorf("storing object %x: %w", id, err)
	}
	created, err = p.r.finishObject(p.t, id, st.Size(), false)
	if err != nil {
		return false, fmt.Errorf("storing object %x: %w", id, err)
	}
	return created, nil
}

// Discard drops the bytes; nothing was named.
func (p *Pending) Discard() { p.t.discard() }
