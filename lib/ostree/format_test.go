package ostree

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// Every vector was produced by the ostree 2022.7 CLI, committing one file
// with that metadata; the case names are only labels.
func TestContentChecksumVectors(t *testing.T) {
	root := func(mode uint32) FileMeta { return FileMeta{Mode: mode} }
	cases := []struct {
		name    string
		meta    FileMeta
		content string
		target  string // symlink if non-empty
		header  string // optional expected header hex (GVariant part only)
		want    string
	}{
		{"9.1 hello", root(0o644), "hello", "", "0000000000000000000081a4000000000011", "afd2231b1fa521726d822282338af4736b56a2a4b3f121b5e2446458bb8c4e10"},
		{"9.2 empty", root(0o644), "", "", "", "cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e"},
		{"9.3 hello\\n", root(0o644), "hello\n", "", "", "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"},
		{"9.4 script", root(0o755), "#!/bin/sh\necho hi\n", "", "", "89b350d278ff59ba4780bc377b8ebfee8ade6b55c99fab1ec84e133bc6ea52c5"},
		{"9.5 suid", root(0o4755), "suid", "", "", "c140aecbcad71b1ff2e65f964ed96c8f57f6a69927b8ba2e5cb607406c0b1fb0"},
		{"9.6 1000 A", root(0o644), strings.Repeat("A", 1000), "", "", "faa0d1e8b72dceb985c0eae7e7169b28856a16abf657ad6da75c8f08c8486a3a"},
		{"9.7 symlink", FileMeta{Mode: 0o755}, "", "/usr/lib", "00000000000000000000a1ff000000002f7573722f6c69620019", "9d38ccb71de939fe221d954e0c289879177d774e48fce9d9b28d9b40768d1bf6"},
		{"9.8 symlink xattr", FileMeta{Mode: 0o777, Xattrs: map[string][]byte{"trusted.x": []byte("1")}}, "", "../usr/bin/hi", "", "abf8c5859a19bfddb0eedb7614c5489c8932e5e29454e6c5ef5fc94bb3494561"},
		{"9.9 owned", FileMeta{UID: 1000, GID: 1001, Mode: 0o600, Xattrs: map[string][]byte{
			"user.zeta": []byte("last"), "user.alpha": []byte("first"), "user.Mid": []byte("mid\x00bin")}},
			"owned", "",
			"000003e8000003e900008180 00000000 00 757365722e4d6964006d69640062696e09 757365722e616c7068610066697273740b 757365722e7a657461006c6173740a 112231 11",
			"2197daea52e3c22adcf71e32ab1563a40ebbc3f45fa0047f4c6ee11544329ab3"},
		{"9.10 2-byte offsets", FileMeta{Mode: 0o644, Xattrs: map[string][]byte{"user.big": bytes.Repeat([]byte("A"), 300)}}, "z", "", "", "d68f1ebfad0c7420e04644f6089a6eaa9b4cc40c1021455c032678b2922db76e"},
		{"9.10b selinux", FileMeta{Mode: 0o644, Xattrs: map[string][]byte{"security.selinux": []byte("system_u:object_r:usr_t:s0\x00")}}, "Z", "", "", "ca9bc2eae17276bf22eef86fe5b47c6381046bad355ba973e6dda06688003b2d"},
		{"9.10c empty value dropped", FileMeta{Mode: 0o644, Xattrs: map[string][]byte{"user.x": []byte("1"), "user.empty": {}}}, "e", "", "", "e6df33f770c3cde8b8f85cc7758201f16c1aa6cd9ed42b045ec67f2b6a98d7b3"},
	}
	for _, c := range cases {
		var got string
		var err error
		if c.target != "" {
			got, err = SymlinkChecksum(c.meta, c.target)
		} else {
			got, err = FileChecksum(c.meta, strings.NewReader(c.content))
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: checksum %s want %s", c.name, got, c.want)
		}
		if c.header != "" {
			h, err := fileHeader(c.meta, c.target, c.target != "")
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, c.header); !bytes.Equal(h, want) {
				t.Errorf("%s: header %x want %x", c.name, h, want)
			}
		}
	}
	// ostree.md counts the 8-byte length prefix in its 340 bytes.
	h, _ := fileHeader(FileMeta{Mode: 0o644, Xattrs: map[string][]byte{"user.big": bytes.Repeat([]byte("A"), 300)}}, "", false)
	if len(h)+8 != 340 || !bytes.HasSuffix(h, mustHex(t, "41090037011100")) {
		t.Errorf("9.10 header: %d bytes ending %x", len(h), h[len(h)-7:])
	}
}

func TestFileMetaRejectsTypeBits(t *testing.T) {
	if _, err := FileChecksum(FileMeta{Mode: 0o100644}, strings.NewReader("")); err == nil {
		t.Error("S_IFREG in FileMeta.Mode accepted")
	}
	if _, err := SymlinkChecksum(FileMeta{}, ""); err == nil {
		t.Error("empty symlink target accepted")
	}
}

const (
	dirMeta0755 = "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488"
	csumHello   = "afd2231b1fa521726d822282338af4736b56a2a4b3f121b5e2446458bb8c4e10"
)

func TestDirMetaVectors(t *testing.T) {
	cases := []struct {
		m    DirMeta
		hex  string
		want string
	}{
		{DirMeta{Mode: 0o755}, "00000000 00000000 000041ed", dirMeta0755},
		{DirMeta{UID: 42, GID: 43, Mode: 0o700}, "0000002a0000002b000041c0", "ff3e10b354de9c0d4a08284e828d3fd91588b78003aad3479f4300fa7eb4c8f9"},
		{DirMeta{Mode: 0o755, Xattrs: map[string][]byte{"user.dirattr": []byte("dv")}}, "0000000000000000000041ed757365722e646972617474720064760d10", "1fe2d52e1ed423668c639f9a8b6f04a496ce4b58c36f89717871b8a0f5ac0e1a"},
	}
	for _, c := range cases {
		b, err := c.m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, mustHex(t, c.hex)) {
			t.Errorf("%+v: %x want %s", c.m, b, c.hex)
		}
		if got := MetadataChecksum(b); got != c.want {
			t.Errorf("%+v: checksum %s want %s", c.m, got, c.want)
		}
		back, err := ParseDirMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(back.Xattrs) == 0 {
			back.Xattrs = nil
		}
		if !reflect.DeepEqual(back, c.m) {
			t.Errorf("parsed %+v want %+v", back, c.m)
		}
	}
	if _, err := ParseDirMeta(mustHex(t, "0000000000000000ed410000")); err == nil {
		t.Error("little-endian dirmeta mode accepted")
	}
}

func TestDirTreeVectors(t *testing.T) {
	empty, _ := DirTree{}.Bytes()
	if !bytes.Equal(empty, []byte{0}) || MetadataChecksum(empty) != "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" {
		t.Errorf("empty dirtree %x", empty)
	}
	one := DirTree{Files: []DirTreeFile{{"hello.txt", csumHello}}}
	b, err := one.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "68656c6c6f2e74787400"+csumHello+"0a2b2c"); !bytes.Equal(b, want) {
		t.Errorf("9.11e: %x", b)
	}
	if MetadataChecksum(b) != "5d77628526b9aafe275ebcff56af4ed1c2031381e08fdbb87d74a6ba945bbed5" {
		t.Errorf("9.11e checksum %s", MetadataChecksum(b))
	}
	// Given out of order: Bytes must sort.
	two := DirTree{Files: []DirTreeFile{
		{"hello-nl", "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"},
		{"a1000", "faa0d1e8b72dceb985c0eae7e7169b28856a16abf657ad6da75c8f08c8486a3a"},
	}}
	b, err = two.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if MetadataChecksum(b) != "050c57e1dd747cccf35d540134fe42af03c3a14e22d1c05beb5fd17189046769" {
		t.Errorf("9.11f checksum %s", MetadataChecksum(b))
	}
	parsed, err := ParseDirTree(b)
	if err != nil || parsed.Files[0].Name != "a1000" || parsed.Files[1].Name != "hello-nl" {
		t.Errorf("parse: %+v %v", parsed, err)
	}
	again, _ := parsed.Bytes()
	if !bytes.Equal(again, b) {
		t.Error("dirtree round trip differs")
	}

	for _, bad := range []DirTree{
		{Files: []DirTreeFile{{"a", csumHello}, {"a", csumHello}}},
		{Files: []DirTreeFile{{"a", csumHello}}, Dirs: []DirTreeDir{{"a", csumHello, dirMeta0755}}},
		{Files: []DirTreeFile{{"..", csumHello}}},
		{Files: []DirTreeFile{{"a/b", csumHello}}},
		{Files: []DirTreeFile{{"\xff", csumHello}}},
		{Files: []DirTreeFile{{"x", "AFD2"}}},
	} {
		if _, err := bad.Bytes(); err == nil {
			t.Errorf("invalid dirtree accepted: %+v", bad)
		}
	}
}

func TestCommitVectors(t *testing.T) {
	const (
		tree9f = "050c57e1dd747cccf35d540134fe42af03c3a14e22d1c05beb5fd17189046769"
		tree9e = "5d77628526b9aafe275ebcff56af4ed1c2031381e08fdbb87d74a6ba945bbed5"
	)
	cases := []struct {
		name string
		c    Commit
		want string
		hex  string
	}{
		{"9.12", Commit{Subject: "t4", Timestamp: 1700000000, RootTree: tree9f, RootMeta: dirMeta0755},
			"b5a9a3e1f7052135e151e397422684b252d552c74bb8e9b16dea5088d8cb4d90",
			"7434000000000000000000006553f100" + tree9f + dirMeta0755 + "300403000000"},
		{"9.13", Commit{Metadata: []MetaEntry{MetaStrings("ostree.ref-binding", "test1")}, Subject: "subj", Timestamp: 0x6b00df00, RootTree: tree9e, RootMeta: dirMeta0755},
			"fc6845e9066e1b48b4b0c3792b48a9d0d328326f201a3bf9e343bd03ef3bf9d1", ""},
		{"9.14", Commit{Metadata: []MetaEntry{MetaString("ostree.linux", "6.1.0"), MetaBool("ostree.bootable", true)}, Subject: "boot", Timestamp: 1700000000,
			RootTree: "c6d21143358169b0ad6ae93d0d1e4111bbeaead84c61100cea11816780f6895e", RootMeta: dirMeta0755},
			"ff2cb63bbba10be121a74994a59bdca093af76eed9fe34d5a9a81cfe025a52b5",
			"6f73747265652e6c696e757800000000362e312e300000730d000000000000006f73747265652e626f6f7461626c650001" +
				"0062101934626f6f74000000000000000000006553f100" + "c6d21143358169b0ad6ae93d0d1e4111bbeaead84c61100cea11816780f6895e" + dirMeta0755 + "683c3b363636"},
	}
	for _, c := range cases {
		b, err := c.c.Bytes()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := MetadataChecksum(b); got != c.want {
			t.Errorf("%s: %s want %s (%x)", c.name, got, c.want, b)
		}
		if c.hex != "" && hex.EncodeToString(b) != c.hex {
			t.Errorf("%s: bytes\n%x\nwant\n%s", c.name, b, c.hex)
		}
		parsed, err := ParseCommit(b)
		if err != nil {
			t.Fatalf("%s: parse: %v", c.name, err)
		}
		again, _ := parsed.Bytes()
		if !bytes.Equal(again, b) {
			t.Errorf("%s: parse/serialize round trip differs", c.name)
		}
	}
	cc, _ := ContentChecksum(tree9f, dirMeta0755)
	if cc != "6d12c0bf4a9f9f6eb5b1c8f8bdeaffdaae4e88a7bb974150ab1b8c94441e0f91" {
		t.Errorf("ContentChecksum %s", cc)
	}
	if _, err := (Commit{RootTree: tree9f, RootMeta: dirMeta0755, Metadata: []MetaEntry{MetaString("", "x")}}).Bytes(); err == nil {
		t.Error("empty metadata key accepted")
	}
}
