package ostree

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Encodings worked out from the GVariant specification's own examples and
// glib's serializer; each is also decoded and re-encoded.
func TestGVariantKnownEncodings(t *testing.T) {
	cases := []struct {
		sig  string
		val  any
		want string
	}{
		{"s", "hello world", "68656c6c6f20776f726c6400"},
		{"ms", "hello world", "68656c6c6f20776f726c640000"},
		{"ms", nil, ""},
		{"mu", uint32(7), "07000000"},
		{"ab", []any{true, false, true}, "010001"},
		{"as", []any{"i", "can", "has", "strings?"}, "690063616e0068617300737472696e67733f0002060a13"},
		{"(si)", []any{"foo", int32(-1)}, "666f6f00ffffffff04"},
		{"a{sv}", []any{}, ""},
		{"(yu)", []any{uint8(1), uint32(2)}, "0100000002000000"},
		{"()", []any{}, "00"},
		{"(ui)", []any{uint32(1), int32(2)}, "0100000002000000"},
		{"a(ui)", []any{[]any{uint32(1), int32(2)}, []any{uint32(3), int32(4)}}, "01000000020000000300000004000000"},
		{"v", Variant{"t", uint64(1)}, "01000000000000000074"},
		{"v", Variant{"b", true}, "010062"},
		{"v", Variant{"as", []any{"test1"}}, "74657374310006006173"},
		{"ay", []byte{1, 2, 3}, "010203"},
		{"aay", []any{[]byte{}, []byte{1}}, "010001"},
		{"(yt)", []any{uint8(1), uint64(2)}, "01000000000000000200000000000000"},
		{"{ys}", []any{uint8(5), "x"}, "057800"},
		{"mmy", nil, ""},
		{"(ms)", []any{nil}, ""},
	}
	for _, c := range cases {
		got, err := MarshalGVariant(c.sig, c.val)
		if err != nil {
			t.Errorf("%s: %v", c.sig, err)
			continue
		}
		if hex.EncodeToString(got) != c.want {
			t.Errorf("%s %v: got %x want %s", c.sig, c.val, got, c.want)
		}
		back, err := UnmarshalGVariant(c.sig, got)
		if err != nil {
			t.Errorf("%s: decode: %v", c.sig, err)
			continue
		}
		if !reflect.DeepEqual(back, c.val) {
			t.Errorf("%s: decoded %#v want %#v", c.sig, back, c.val)
		}
		if !IsNormalForm(c.sig, got) {
			t.Errorf("%s: own output not in normal form", c.sig)
		}
	}
}

// The framing-offset width must switch exactly where the container stops
// fitting: a 255-byte array uses 1-byte offsets, 256 bytes needs 2.
func TestGVariantOffsetWidthBoundary(t *testing.T) {
	for bodyLen := 250; bodyLen < 260; bodyLen++ {
		s := strings.Repeat("a", bodyLen-1) // one string element, with NUL = bodyLen
		b, err := MarshalGVariant("as", []any{s})
		if err != nil {
			t.Fatal(err)
		}
		wantWidth := 1
		if bodyLen+1 > 0xff {
			wantWidth = 2
		}
		if len(b) != bodyLen+wantWidth {
			t.Errorf("body %d: total %d, want offset width %d", bodyLen, len(b), wantWidth)
		}
		back, err := UnmarshalGVariant("as", b)
		if err != nil || !reflect.DeepEqual(back, []any{s}) {
			t.Errorf("body %d: round trip: %v", bodyLen, err)
		}
	}
}

func TestGVariantRejectsNonNormal(t *testing.T) {
	// ["a"] framed with a 2-byte offset where 1 byte suffices: the
	// mistake fsck reports as a traversal error.
	if IsNormalForm("as", []byte{'a', 0, 2, 0}) {
		t.Error("2-byte offsets in a small array accepted")
	}
	if IsNormalForm("(yu)", mustHex(t, "0101000002000000")) {
		t.Error("non-zero padding accepted")
	}
	if IsNormalForm("b", []byte{2}) {
		t.Error("boolean 2 accepted")
	}
	for _, bad := range []struct{ sig, hex string }{
		{"s", "6162"}, {"as", "610005"}, {"(sayay)", "ff"}, {"v", "0102"}, {"a(say)", "00ff"},
	} {
		if _, err := UnmarshalGVariant(bad.sig, mustHex(t, bad.hex)); err == nil {
			t.Errorf("%s %s: decoded garbage without error", bad.sig, bad.hex)
		}
	}
}

func TestGVariantMarshalErrors(t *testing.T) {
	for _, c := range []struct {
		sig string
		val any
	}{
		{"s", "a\x00b"}, {"s", "\xff"}, {"u", 1}, {"(uu)", []any{uint32(1)}}, {"v", Variant{"z", 1}}, {"a{vs}", []any{}},
	} {
		if _, err := MarshalGVariant(c.sig, c.val); err == nil {
			t.Errorf("%s %#v: no error", c.sig, c.val)
		}
	}
}

// Decoding arbitrary bytes must never panic; this is the parser fsck-like
// tools will point at untrusted repositories.
func FuzzUnmarshalGVariant(f *testing.F) {
	f.Add([]byte{0})
	f.Add(mustHexF("0000000000000000000041ed757365722e646972617474720064760d10"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, sig := range []string{"(a{sv}aya(say)sstayay)", "(a(say)a(sayay))", "(uuua(ayay))", "v", "mas"} {
			v, err := UnmarshalGVariant(sig, data)
			if err != nil {
				continue
			}
			again, err := MarshalGVariant(sig, v)
			if err != nil {
				t.Fatalf("%s: decoded value does not re-encode: %v", sig, err)
			}
			if IsNormalForm(sig, data) != bytes.Equal(again, data) {
				t.Fatalf("%s: IsNormalForm disagrees with re-encoding", sig)
			}
		}
	})
}

func mustHexF(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
