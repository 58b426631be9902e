package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"

	"github.com/vbatts/tar-split/archive/tar"

	"github.com/cfs-project/cfs/lib/composefs"
	"github.com/cfs-project/cfs/lib/fstree"
	"github.com/cfs-project/cfs/lib/splitstream"
)

// LayerStats counts what storing a layer wrote.
type LayerStats struct {
	Members        int
	ObjectsNew     int
	ObjectsPresent int
	BytesNew       int64 // bytes of new objects
	TarBytes       int64 // length of the uncompressed tar
}

// ImportLayer stores an uncompressed layer tar in the repository as the
// splitstream oci-layer-<diffID>: headers, padding and small bodies
// inline, bodies over 64 bytes as objects, so that the tar can be
// rebuilt byte for byte. The tar's sha256 must equal diffID, or nothing is
// named (objects already written are unreferenced and GC removes them).
// Each member is passed to member, if not nil, after its body is stored.
func ImportLayer(repo *composefs.Repository, tarStream io.Reader, diffID string, member func(*Member) error) (LayerStats, error) {
	return ImportLayerWith(repo, tarStream, diffID, member, nil)
}

// ObjectWriter stores the body of a regular member larger than InlineMax,
// read from body (exactly m.Size bytes, all of which it must read), and
// reports the object's id, the bytes read and whether the object is new.
type ObjectWriter func(m *Member, body io.Reader) (id []byte, n int64, created bool, err error)

// ImportLayerWith is ImportLayer with the bodies of large members stored
// by objects instead of copied into the repository (nil: copied), for
// sources whose bytes are already in files that can be cloned.
func ImportLayerWith(repo *composefs.Repository, tarStream io.Reader, diffID string, member func(*Member) error, objects ObjectWriter) (LayerStats, error) {
	return importLayer(repo, tarStream, diffID, member, objects, nil)
}

// ImportLayerLogged is ImportLayerWith without a member callback that
// also records the members in log, a new one, for BuildCheckedTreeFrom.
// objects may be nil, as for ImportLayerWith. The log is complete once
// this returns without error.
func ImportLayerLogged(repo *composefs.Repository, tarStream io.Reader, diffID string, objects ObjectWriter, log *MemberLog) (LayerStats, error) {
	return importLayer(repo, tarStream, diffID, nil, objects, log)
}

func importLayer(repo *composefs.Repository, tarStream io.Reader, diffID string, member func(*Member) error, objects ObjectWriter, log *MemberLog) (LayerStats, error) {
	// Without a member callback or an object writer of the caller's, the
	// bodies are stored by workers (pipeline.go) and the splitstream is
	// assembled by asm; otherwise everything happens here, in order.
	pipelined := objects == nil && member == nil
	if objects == nil {
		// Each new object also records its CRC-64/ISO, what tar-split
		// records for the body: cfs-clone --to containers-storage then
		// writes a layer's tar-split without reading the bodies
		// (composefs.ObjectRecords). The body workers do the same.
		objects = func(m *Member, body io.Reader) ([]byte, int64, bool, error) {
			return repo.WriteObjectWith(body, composefs.WriteOptions{RecordPrefix: ostreePrefix(m), CRC64: true})
		}
	}
	var stats LayerStats
	sum := sha256.New()
	counted := &countingReader{r: io.TeeReader(tarStream, sum)}
	ss, err := splitstream.NewWriter(uint8(repo.Algorithm()), splitstream.ContentOCILayer)
	if err != nil {
		return stats, err
	}
	tr := tar.NewReader(counted)
	tr.RawAccounting = true
	// Paths seen, by two independent 64-bit hashes rather than by the
	// path: a layer has a path per file, and a false match (odds about
	// 2^-100 for a million paths) can only refuse a layer, never let a
	// duplicate through.
	seen := make(map[[2]uint64]struct{})
	seeds := [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	var small [InlineMax + 1]byte
	var bp *bodyPipeline
	var asm *assembler
	if pipelined {
		bp = newBodyPipeline(repo)
		asm = newAssembler(ss, &stats, diffID, log)
		defer func() {
			bp.close()
			asm.close()
		}()
	}
	write := func(b []byte) {
		if asm != nil {
			asm.inline(b)
		} else {
			ss.Write(b)
		}
	}
	for {
		hdr, err := tr.Next()
		write(tr.RawBytes())
		if err == io.EOF {
			break
		}
		if err != nil {
			return stats, fmt.Errorf("layer %s: reading tar after %d members: %w", diffID, stats.Members, err)
		}
		m, err := memberFromHeader(hdr)
		if err != nil {
			return stats, fmt.Errorf("layer %s: member %q: %w", diffID, hdr.Name, err)
		}
		key := [2]uint64{maphash.String(seeds[0], m.Path), maphash.String(seeds[1], m.Path)}
		if _, dup := seen[key]; dup && m.Path != "/" {
			return stats, fmt.Errorf("layer %s: member %q: %s appears twice in the layer", diffID, hdr.Name, m.Path)
		}
		seen[key] = struct{}{}
		stats.Members++
		if m.Kind == fstree.Regular && m.Size > InlineMax && bp != nil {
			if bp.failed.Load() {
				break // asm has the error
			}
			j, err := bp.start(tr, m.Size, ostreePrefix(m))
			asm.external(j, hdr.Name)
			if err != nil {
				return stats, fmt.Errorf("layer %s: member %q: %w", diffID, hdr.Name, err)
			}
		} else if m.Kind == fstree.Regular && m.Size > InlineMax {
			id, n, created, err := objects(m, tr)
			if err != nil {
				return stats, fmt.Errorf("layer %s: member %q: %w", diffID, hdr.Name, err)
			}
			if n != m.Size {
				return stats, fmt.Errorf("layer %s: member %q: body is %d bytes, header says %d", diffID, hdr.Name, n, m.Size)
			}
			if created {
				stats.ObjectsNew++
				stats.BytesNew += n
			} else {
				stats.ObjectsPresent++
			}
			m.Object = id
			if log != nil {
				log.addObject(id)
			}
			if err := ss.WriteExternal(id, n); err != nil {
				return stats, err
			}
		} else {
			n, err := io.ReadFull(tr, small[:])
			if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return stats, fmt.Errorf("layer %s: member %q: %w", diffID, hdr.Name, err)
			}
			body := small[:n]
			if len(body) > InlineMax {
				return stats, fmt.Errorf("layer %s: member %q: a %v member carries a body", diffID, hdr.Name, hdr.Typeflag)
			}
			write(body)
			if m.Kind == fstree.Regular {
				m.Inline = bytes.Clone(body)
			}
		}
		write(tr.RawBytes())
		if log != nil {
			log.add(m)
		}
		if member != nil {
			if err := member(m); err != nil {
				return stats, err
			}
		}
	}
	if bp != nil {
		// Every object stored and the stream assembled up to here.
		bp.close()
		if err := asm.close(); err != nil {
			return stats, err
		}
	}
	// Whatever follows the end-of-archive blocks belongs to the diffID too.
	if _, err := io.Copy(ss, counted); err != nil {
		return stats, fmt.Errorf("layer %s: reading past the end of the archive: %w", diffID, err)
	}
	stats.TarBytes = counted.n
	got := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	if got != diffID {
		return stats, fmt.Errorf("layer %s: uncompressed content has digest %s (corrupt or truncated layer)", diffID, got)
	}
	if _, err := repo.WriteStream(composefs.LayerContentID(diffID), ss); err != nil {
		return stats, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if log != nil {
		log.finish()
	}
	return stats, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ReadLayer replays the members of a stored layer in tar order without
// reading any object: external bodies are skipped by their size, after
// checking that each object exists with that size.
func ReadLayer(repo *composefs.Repository, diffID string, member func(*Member) error) error {
	return readLayer(repo, diffID, member, true)
}

// readLayer is ReadLayer, checking each object only if check is set.
func readLayer(repo *composefs.Repository, diffID string, member func(*Member) error, check bool) error {
	sr, _, err := repo.OpenStream(composefs.LayerContentID(diffID), splitstream.ContentOCILayer)
	if err != nil {
		return err
	}
	defer sr.Close()
	body := &layerBodies{sr: sr, repo: repo, check: check}
	tr := tar.NewReader(body)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stored layer %s: %w", diffID, err)
		}
		m, err := memberFromHeader(hdr)
		if err != nil {
			return fmt.Errorf("stored layer %s: member %q: %w", diffID, hdr.Name, err)
		}
		body.lastObject, body.expect = nil, hdr.Size
		if m.Kind == fstree.Regular && m.Size <= InlineMax {
			// Exactly the size, not io.ReadAll's 512-byte start: the tree
			// keeps every one of these.
			m.Inline = make([]byte, m.Size)
			if _, err = io.ReadFull(tr, m.Inline); err != nil {
				return fmt.Errorf("stored layer %s: member %q: %w", diffID, hdr.Name, err)
			}
		} else if hdr.Size > 0 {
			// The first byte brings the member's chunk in (and checks its
			// object); tr.Next skips the rest with layerBodies.Seek
			// instead of reading zeros, gigabytes of them in a large
			// image.
			var first [1]byte
			if _, err := io.ReadFull(tr, first[:]); err != nil {
				return fmt.Errorf("stored layer %s: member %q: %w", diffID, hdr.Name, err)
			}
		}
		if m.Kind == fstree.Regular && m.Size > InlineMax {
			if body.lastObject == nil {
				return fmt.Errorf("stored layer %s: member %q: body is not an object", diffID, hdr.Name)
			}
			m.Object = body.lastObject
		}
		if err := member(m); err != nil {
			return err
		}
	}
}

// layerBodies presents a layer splitstream as its tar, except that an
// external chunk reads as zeros of the size its tar header gives: the tar
// reader only skips bodies, and the object ids are what the caller wants.
// Each object is checked against that size (composefs.CheckObject), so a
// missing or truncated object is an error naming it, not a misparsed tar.
type layerBodies struct {
	sr         *splitstream.Reader
	repo       *composefs.Repository
	inline     []byte
	zeros      int64
	expect     int64 // the size of the current member's body
	lastObject []byte
	pos        int64 // bytes read or skipped, for Seek
	check      bool  // CheckObject each object
}

func (b *layerBodies) Read(p []byte) (int, error) {
	if err := b.fill(); err != nil {
		return 0, err
	}
	if len(b.inline) > 0 {
		n := copy(p, b.inline)
		b.inline = b.inline[n:]
		b.pos += int64(n)
		return n, nil
	}
	n := min(int64(len(p)), b.zeros)
	clear(p[:n])
	b.zeros -= n
	b.pos += n
	return int(n), nil
}

// Seek moves forward from the current position only (io.SeekCurrent, a
// non-negative offset), which is how the tar reader skips a body: the
// zeros standing for an object are skipped without being made.
func (b *layerBodies) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return 0, errors.New("layer stream: only forward seeks from the current position")
	}
	for offset > 0 {
		if err := b.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return b.pos, err
		}
		var n int64
		if len(b.inline) > 0 {
			n = min(offset, int64(len(b.inline)))
			b.inline = b.inline[n:]
		} else {
			n = min(offset, b.zeros)
			b.zeros -= n
		}
		b.pos += n
		offset -= n
	}
	return b.pos, nil
}

// fill brings the next chunk in when the current one is used up.
func (b *layerBodies) fill() error {
	for len(b.inline) == 0 && b.zeros == 0 {
		c, err := b.sr.Next()
		if err != nil {
			return err
		}
		if c.Inline != nil {
			b.inline = c.Inline
			continue
		}
		if b.lastObject != nil {
			return errors.New("two objects for one member")
		}
		if b.check {
			if err := b.repo.CheckObject(c.External, b.expect); err != nil {
				return err
			}
		}
		b.lastObject = c.External
		b.zeros = b.expect
	}
	return nil
}
