package stream

import (
	"bytes"
	"reflect"
	"testing"
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
