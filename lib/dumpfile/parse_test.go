package dumpfile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const rootLine = "/ 4096 40755 2 0 0 0 0.0 - - -\n"

func TestParseErrorsNameTheLine(t *testing.T) {
	big := strings.Repeat("v", 40000)
	cases := []struct {
		name, input, want string
	}{
		{"dotdot", rootLine + "/a 0 40755 2 0 0 0 0.0 - - -\n/a/.. 0 100644 1 0 0 0 0.0 - - -\n", ":3:"},
		{"dot-in-middle", rootLine + "/a 0 40755 2 0 0 0 0.0 - - -\n/a/./b 0 100644 1 0 0 0 0.0 - - -\n", ":3:"},
		{"hardlink-to-dir", rootLine + "/d 0 40755 2 0 0 0 0.0 - - -\n/l 0 @100644 1 0 0 0 0.0 /d - -\n", ":3:"},
		{"missing-parent", rootLine + "/a/b 0 100644 1 0 0 0 0.0 - - -\n", ":2:"},
		{"xattr-too-big", rootLine + "/f 0 100644 1 0 0 0 0.0 - - - user.a=" + big + "\n", ":2:"},
		{"escaped-slash-name", rootLine + "/a\\x2f 0 100644 1 0 0 0 0.0 - - -\n", ":2:"},
		{"empty-component", rootLine + "/a//b 0 100644 1 0 0 0 0.0 - - -\n", ":2:"},
		{"relative", rootLine + "a 0 100644 1 0 0 0 0.0 - - -\n", ":2:"},
		{"no-root", "/a 0 100644 1 0 0 0 0.0 - - -\n", ":1:"},
		{"duplicate", rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n", ":3:"},
		{"dangling-link", rootLine + "/l 0 @100644 1 0 0 0 0.0 /nope - -\n", ":2:"},
		{"bad-escape", rootLine + "/a\\q 0 100644 1 0 0 0 0.0 - - -\n", ":2:"},
		{"content-size", rootLine + "/a 3 100644 1 0 0 0 0.0 - ab -\n", ":2:"},
		{"bad-mtime", rootLine + "/a 0 100644 1 0 0 0 x - - -\n", ":2:"},
		{"nul", rootLine + "/a\x00 0 100644 1 0 0 0 0.0 - - -\n", ":2:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.input), "in.dump")
			if err == nil {
				t.Fatal("accepted")
			}
			var pe *Error
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "in.dump"+c.want) {
				t.Fatalf("error %q does not name line %s", err, c.want)
			}
		})
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "-", "a b", "x=y", "\\", "\n\r\t", "\x00\xff\x7f~!", "é"} {
		for _, m := range []escapeMode{escapeStandard, escapeEqual, escapeLoneDash} {
			var b strings.Builder
			escape(&b, s, m)
			e := b.String()
			if strings.ContainsAny(e, " \n") || (m == escapeEqual && strings.Contains(e, "=")) {
				t.Errorf("escape(%q) = %q keeps a separator", s, e)
			}
			got, err := unescape(e)
			if err != nil || got != s {
				t.Errorf("unescape(escape(%q)) = %q, %v", s, got, err)
			}
		}
	}
}

func TestParseWriteFixedPoint(t *testing.T) {
	in := rootLine +
		"/a 2 100644 1 0 0 0 5.7 - hi -\n" +
		"/b 0 @100644 1 0 0 0 5.7 /a - -\n" +
		"/c 10 100644 1 0 0 0 0.0 00/11 - - user.x=\\x3d\n"
	root, err := Parse(strings.NewReader(in), "in")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Write(&out, root); err != nil {
		t.Fatal(err)
	}
	root2, err := Parse(bytes.NewReader(out.Bytes()), "out")
	if err != nil {
		t.Fatal(err)
	}
	var out2 bytes.Buffer
	if err := Write(&out2, root2); err != nil {
		t.Fatal(err)
	}
	if out.String() != out2.String() {
		t.Fatalf("not a fixed point:\n%s\n%s", out.String(), out2.String())
	}
	if b := root2.Lookup("b"); b == nil || b.LinkTo != root2.Lookup("a") {
		t.Fatal("hardlink lost")
	}
}
