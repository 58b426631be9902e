package sysroot

import "testing"

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline(`BOOT_IMAGE=/x root=UUID=1 "quoted=a b" ostree=/ostree/boot.1/default/abc/0 composefs=?ff rw`)
	if c.Ostree != "/ostree/boot.1/default/abc/0" || c.Composefs != "ff" || !c.VerityOptional {
		t.Fatalf("%+v", c)
	}
	if c := ParseCmdline("composefs=aa composefs=bb\n"); c.Composefs != "bb" || c.VerityOptional {
		t.Fatalf("last wins: %+v", c)
	}
}

func TestGrubUserCfgNesting(t *testing.T) {
	// GRUB bodies use ${VAR}: the entry ends at the brace that closes it.
	if i := matchBrace("{ a ${X} b }c"); i != 11 {
		t.Fatalf("matchBrace = %d", i)
	}
}

// TestParseBLS: the one parser of entries keeps every key: key and value
// split at the first blank (space or tab), options lines joined, the
// UKI's key (efi or uki) remembered, machine-id and unknown keys kept in
// order; an entry that boots nothing, or a key without a value, is an
// error naming the file and line.
func TestParseBLS(t *testing.T) {
	e, err := ParseBLS("x.conf", []byte("# comment\ntitle\tFedora  Linux\nversion 42\nuki /EFI/Linux/bootc/a.efi\nmachine-id 0123\nsort-key bootc-fedora-0\nx-options-source-tuned quiet\narchitecture x64\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Title != "Fedora  Linux" || e.Version != "42" || e.Efi != "/EFI/Linux/bootc/a.efi" || e.EfiKey != "uki" || e.MachineID != "0123" ||
		e.SortKey != "bootc-fedora-0" || len(e.Extra) != 2 || e.Extra[0] != [2]string{"x-options-source-tuned", "quiet"} || e.Extra[1] != [2]string{"architecture", "x64"} {
		t.Errorf("%+v", e)
	}
	e, err = ParseBLS("y.conf", []byte("linux /vmlinuz\ninitrd /a\ninitrd /b\noptions root=UUID=1 rw\noptions\tquiet\nefi /x.efi\n"))
	if err != nil || e.Options != "root=UUID=1 rw quiet" || len(e.Initrd) != 2 || e.EfiKey != "efi" {
		t.Errorf("%+v %v", e, err)
	}
	for text, want := range map[string]string{"title x\n": "y.conf: neither linux nor efi/uki key", "linux /v\noptions\n": `y.conf: line 2: key "options" has no value`} {
		if _, err := ParseBLS("y.conf", []byte(text)); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", text, err, want)
		}
	}
}
