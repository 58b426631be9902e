package cstorage

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"path/filepath"
	"unicode/utf8"

	tsstorage "github.com/vbatts/tar-split/tar/storage"
)

// tarSplitReader decodes a tar-split's entries as tar-split's own JSON
// unpacker does (same entries, same errors, the same duplicate-path
// check), several times faster: a layer's tar-split holds three entries
// per file, and encoding/json's reflection over them was 7% of an
// import's CPU. Each line tar-split's packer writes (json.Encoder: the
// fields in struct order, one entry per line) is parsed directly when it
// has exactly that shape and its strings need no unescaping; any other
// line, and everything after it, goes through encoding/json, so what the
// fast path does not know it never guesses.
type tarSplitReader struct {
	br      *bufio.Reader
	dec     *json.Decoder // set once a line did not have the packer's shape
	seen    map[string]struct{}
	general int // lines decoded by encoding/json (for tests)
}

func newTarSplitReader(r io.Reader) *tarSplitReader {
	return &tarSplitReader{br: bufio.NewReaderSize(r, 64<<10), seen: map[string]struct{}{}}
}

// Next is tsstorage.Unpacker's Next.
func (u *tarSplitReader) Next() (*tsstorage.Entry, error) {
	var e tsstorage.Entry
	if u.dec == nil {
		line, err := u.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = u.br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(line) == 0 && err == io.EOF {
			return nil, io.EOF
		}
		if !parseTarSplitLine(line, &e) {
			e = tsstorage.Entry{}
			u.dec = json.NewDecoder(io.MultiReader(bytes.NewReader(append([]byte(nil), line...)), u.br))
		}
	}
	if u.dec != nil {
		u.general++
		if err := u.dec.Decode(&e); err != nil {
			return nil, err
		}
	}
	if e.Type == tsstorage.FileType {
		name := filepath.Clean(e.GetName())
		if _, ok := u.seen[name]; ok {
			return nil, tsstorage.ErrDuplicatePath
		}
		u.seen[name] = struct{}{}
	}
	return &e, nil
}

// parseTarSplitLine parses one line of the packer's exact shape,
//
//	{"type":N[,"name":"S"][,"name_raw":"B64"][,"size":N],"payload":"B64"|null,"position":N}
//
// and reports false for anything else, or for a string whose JSON
// decoding would not be its bytes as they stand (escapes, control
// characters, invalid UTF-8), or a number encoding/json would refuse or
// read differently.
func parseTarSplitLine(line []byte, e *tsstorage.Entry) bool {
	s := bytes.TrimSuffix(line, []byte("\n"))
	var ok bool
	var n int64
	if s, ok = cutPrefix(s, `{"type":`); !ok {
		return false
	}
	if n, s, ok = parseJSONInt(s, 9); !ok {
		return false
	}
	e.Type = tsstorage.Type(n)
	if rest, ok := cutPrefix(s, `,"name":"`); ok {
		var str []byte
		if str, s, ok = parseJSONPlainString(rest); !ok {
			return false
		}
		e.Name = string(str)
	}
	if rest, ok := cutPrefix(s, `,"name_raw":"`); ok {
		if e.NameRaw, s, ok = parseJSONBase64(rest); !ok {
			return false
		}
	}
	if rest, ok := cutPrefix(s, `,"size":`); ok {
		if e.Size, s, ok = parseJSONInt(rest, 18); !ok {
			return false
		}
	}
	if rest, ok := cutPrefix(s, `,"payload":null`); ok {
		s = rest
	} else if rest, ok := cutPrefix(s, `,"payload":"`); ok {
		if e.Payload, s, ok = parseJSONBase64(rest); !ok {
			return false
		}
	} else {
		return false
	}
	if s, ok = cutPrefix(s, `,"position":`); !ok {
		return false
	}
	if n, s, ok = parseJSONInt(s, 9); !ok {
		return false
	}
	e.Position = int(n)
	return string(s) == "}"
}

func cutPrefix(s []byte, prefix string) ([]byte, bool) {
	if len(s) < len(prefix) || string(s[:len(prefix)]) != prefix {
		return s, false
	}
	return s[len(prefix):], true
}

// parseJSONInt parses an integer of at most maxDigits digits in JSON's
// grammar (no leading zero, no fraction or exponent), so that it fits
// the field encoding/json would put it in.
func parseJSONInt(s []byte, maxDigits int) (int64, []byte, bool) {
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	i := 0
	var n int64
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + int64(s[i]-'0')
		i++
	}
	if i == 0 || i > maxDigits || s[0] == '0' && i > 1 {
		return 0, s, false
	}
	if neg {
		n = -n
	}
	return n, s[i:], true
}

// parseJSONPlainString takes a string's bytes up to its closing quote
// where JSON decoding would give them back unchanged: no escape, no
// control character, valid UTF-8.
func parseJSONPlainString(s []byte) (str, rest []byte, ok bool) {
	ascii := true
	for i, c := range s {
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(s[:i]) {
				return nil, s, false
			}
			return s[:i], s[i+1:], true
		case c == '\\' || c < 0x20:
			return nil, s, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, s, false
}

// parseJSONBase64 decodes a []byte field as encoding/json does (standard
// base64, padded; "" is an empty, not a nil, slice).
func parseJSONBase64(s []byte) (b, rest []byte, ok bool) {
	str, rest, ok := parseJSONPlainString(s)
	if !ok {
		return nil, s, false
	}
	b = make([]byte, base64.StdEncoding.DecodedLen(len(str)))
	n, err := base64.StdEncoding.Decode(b, str)
	if err != nil {
		return nil, s, false
	}
	return b[:n], rest, true
}
