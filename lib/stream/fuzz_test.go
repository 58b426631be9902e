package stream

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReader feeds arbitrary bytes to the reader. It must never panic, and
// whatever it accepts must survive being written again unchanged: the
// writer and the reader agree on every rule.
func FuzzReader(f *testing.F) {
	good := writeStream(f, testImage(), testEntries())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(bytes.Replace(good, []byte(`"/usr/bin/sh"`), []byte(`"/usr/bin/../sh"`), 1))
	f.Add([]byte("{\"type\":\"image\"}\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := readStream(data)
		if err != nil {
			return
		}
		again := writeStream(t, res.image, res.entries)
		res2, err := readStream(again)
		if err != nil {
			t.Fatalf("a stream the reader accepted does not survive a rewrite: %v", err)
		}
		if !reflect.DeepEqual(res.entries, res2.entries) {
			t.Fatalf("entries changed in a rewrite")
		}
		if third := writeStream(t, res2.image, res2.entries); !bytes.Equal(third, again) {
			t.Fatalf("writing the same stream twice gave different bytes")
		}
	})
}

// FuzzEntryRecord puts one arbitrary line into an otherwise valid, sealed
// stream, so the fuzzer reaches the record checks instead of stopping at
// the end-record digest.
func FuzzEntryRecord(f *testing.F) {
	good := lines(f, testEntries())
	for _, l := range good[1:] {
		f.Add(uint8(3), l)
	}
	f.Add(uint8(9), `{"type":"hardlink","path":"/usr/bin/sh","linkTo":"/usr/bin/bash"}`)
	f.Add(uint8(2), `{"type":"file","path":"/a","size":3,"inline":"YWJj"}`)
	f.Fuzz(func(t *testing.T, at uint8, line string) {
		if bytes.ContainsRune([]byte(line), '\n') {
			return
		}
		i := 1 + int(at)%(len(good)-1)
		ls := append(append(append([]string(nil), good[:i]...), line), good[i:]...)
		res, err := readStream([]byte(seal(ls, len(ls)-1)))
		if err != nil {
			return
		}
		again := writeStream(t, res.image, res.entries)
		if _, err := readStream(again); err != nil {
			t.Fatalf("accepted record %q does not survive a rewrite: %v", line, err)
		}
	})
}

// FuzzCheckLine compares the strict scan with a reference built on
// encoding/json's tokenizer: on valid JSON, checkLine must refuse exactly
// the lines in which some object repeats a key.
func FuzzCheckLine(f *testing.F) {
	for _, l := range lines(f, testEntries()) {
		f.Add(l)
	}
	f.Add(`{"type":"dir","path":"/","path":"/"}`)
	f.Add(`{"a":{"b":1,"b":2},"c":[{"d":1},{"d":1}]}`)
	f.Add(`{"xattrs":{"user.a":"","user.\u0061":""}}`)
	f.Fuzz(func(t *testing.T, line string) {
		err := checkLine([]byte(line))
		if !json.Valid([]byte(line)) || !utf8.ValidString(line) {
			return
		}
		dup, ok := hasDuplicateKey(line)
		if !ok {
			return
		}
		gotDup := err != nil && strings.Contains(err.Error(), "duplicate key")
		if err != nil && !gotDup {
			return // refused first for another reason (a key's case, a surrogate)
		}
		if dup != gotDup {
			t.Fatalf("%q: reference says duplicate=%v, checkLine: %v", line, dup, err)
		}
	})
}

// hasDuplicateKey is the reference: it walks the tokens, keeping the keys
// of every open object. ok is false when the tokenizer gives up.
func hasDuplicateKey(line string) (dup, ok bool) {
	dec := json.NewDecoder(strings.NewReader(line))
	type frame struct {
		keys      map[string]bool
		object    bool
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false, true
		}
		if err != nil {
			return false, false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, object: v == '{', expectKey: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.expectKey {
				if top.keys[v] {
					return true, true
				}
				top.keys[v] = true
				top.expectKey = false
				continue
			}
			if top != nil && top.object {
				top.expectKey = true
			}
		default:
			if top != nil && top.object {
				top.expectKey = true
			}
		}
	}
}
