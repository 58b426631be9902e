package ostree

import "testing"

func TestKeyFile(t *testing.T) {
	src := "# comment\n[core]\nrepo_version=1\nmode = bare-user\n\n[remote \"x\"]\nurl=http://a\\sb\n"
	kf, err := ParseKeyFile([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := kf.Get("core", "mode"); v != "bare-user" {
		t.Errorf("mode %q", v)
	}
	if v, _ := kf.Get(`remote "x"`, "url"); v != "http://a b" {
		t.Errorf("url %q", v)
	}
	if _, ok := kf.Get("core", "url"); ok {
		t.Error("key found in the wrong group")
	}
	if b, err := kf.GetBool("composefs", "unified", false); err != nil || b {
		t.Errorf("absent bool: %v %v", b, err)
	}
	kf.Set("core", "fsync", "false")
	kf.Set("composefs", "unified", "true")
	kf.Set("core", "mode", "bare")
	want := "# comment\n[core]\nrepo_version=1\nmode=bare\nfsync=false\n\n[remote \"x\"]\nurl=http://a\\sb\n\n[composefs]\nunified=true\n"
	if got := string(kf.Bytes()); got != want {
		t.Errorf("after Set:\n%s\nwant:\n%s", got, want)
	}
	if b, err := kf.GetBool("composefs", "unified", false); err != nil || !b {
		t.Errorf("unified: %v %v", b, err)
	}
	kf.Set("core", "x", " lead\ttab\\")
	if v, _ := kf.Get("core", "x"); v != " lead\ttab\\" {
		t.Errorf("escaping round trip: %q", v)
	}
	for _, bad := range []string{"key=outside\n", "[core\n", "[core]\nnovalue\n"} {
		if _, err := ParseKeyFile([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
