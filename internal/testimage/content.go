package testimage

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
)

// contentKind decides how compressible a file is, so that compressed layer
// sizes and chunking behave like they do on real OS images rather than on
// pure noise or pure zeros.
type contentKind uint8

const (
	kindRandom contentKind = iota // compressed kernels, firmware
	kindText                      // configs, docs, scripts
	kindMixed                     // ELF binaries: code blocks, zero padding, strings
)

// content describes a regular file's bytes without holding them: the bytes
// are regenerated from the seed whenever they are needed, which keeps the
// multi-GiB benchmark image within a bounded amount of memory. A content is
// shared by every path that is a hardlink to the same inode.
type content struct {
	seed uint64
	size int64
	kind contentKind
	// literal, when set, is the whole file (os-release, passwd, ...).
	literal []byte

	// digest is filled the first time the layer holding this content is
	// serialized; Generate serializes every layer before returning.
	digest digest.Digest
}

func literalContent(s string) *content {
	return &content{size: int64(len(s)), literal: []byte(s)}
}

func (c *content) reader() io.Reader {
	if c.literal != nil {
		return &literalReader{data: c.literal}
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], c.seed)
	binary.LittleEndian.PutUint64(key[8:], c.seed^0x9e3779b97f4a7c15)
	return io.LimitReader(&generatedReader{rng: rand.NewChaCha8(key), kind: c.kind}, c.size)
}

func (c *content) computeDigest() digest.Digest {
	if c.digest == "" {
		h := sha256.New()
		if _, err := io.Copy(h, c.reader()); err != nil {
			panic(err) // generated readers cannot fail
		}
		c.digest = digest.NewDigest(digest.SHA256, h)
	}
	return c.digest
}

type literalReader struct {
	data []byte
	off  int
}

func (r *literalReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

// words give text blocks a realistic, compressible distribution.
var words = []string{
	"the", "system", "boot", "kernel", "module", "config", "service", "unit",
	"image", "layer", "ostree", "composefs", "verity", "digest", "mount",
	"overlay", "root", "usr", "etc", "var", "=", "true", "false", "0", "1",
	"#", "\n", "\n", "/usr/lib", "ExecStart", "[Unit]", "Description",
}

// generatedBlockSize is the granularity at which kindMixed switches between
// noise, text and zeros.
const generatedBlockSize = 4096

type generatedReader struct {
	rng   *rand.ChaCha8
	kind  contentKind
	block []byte
	off   int
}

func (g *generatedReader) Read(p []byte) (int, error) {
	if g.off >= len(g.block) {
		g.fill()
	}
	n := copy(p, g.block[g.off:])
	g.off += n
	return n, nil
}

func (g *generatedReader) fill() {
	if g.block == nil {
		g.block = make([]byte, generatedBlockSize)
	}
	g.off = 0
	kind := g.kind
	if kind == kindMixed {
		switch g.rng.Uint64() % 4 {
		case 0, 1:
			kind = kindRandom
		case 2:
			kind = kindText
		default:
			clear(g.block)
			return
		}
	}
	if kind == kindRandom {
		_, _ = g.rng.Read(g.block)
		return
	}
	b := g.block[:0]
	for len(b) < generatedBlockSize {
		w := words[g.rng.Uint64()%uint64(len(words))]
		b = append(b, w...)
		b = append(b, ' ')
	}
	// append may have grown past the block; keep the fixed-size buffer.
	copy(g.block, b[:generatedBlockSize])
}
