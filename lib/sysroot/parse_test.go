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
