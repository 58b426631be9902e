package selabel

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustParse(t testing.TB, fc string) *Policy {
	t.Helper()
	p, err := Parse("file_contexts", strings.NewReader(fc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLookup(t *testing.T) {
	p := mustParse(t, `
# comment
/.*		system_u:object_r:default_t:s0
/		-d	system_u:object_r:root_t:s0
/usr(/.*)?		system_u:object_r:usr_t:s0
/usr/bin(/.*)?		system_u:object_r:bin_t:s0
/var/log(/.*)?	-d	system_u:object_r:var_log_dir_t:s0
/var/log(/.*)?	--	system_u:object_r:var_log_t:s0
/var/log(/.*)?	-l	system_u:object_r:var_log_link_t:s0
/dev(/.*)?	-b	system_u:object_r:fixed_disk_device_t:s0
/dev(/.*)?	-c	system_u:object_r:tty_device_t:s0
/dev(/.*)?	-p	system_u:object_r:fifo_t:s0
/dev(/.*)?	-s	system_u:object_r:sock_t:s0
/tmp/private(/.*)?	<<none>>
/exact		system_u:object_r:exact_t:s0
/ex.*		system_u:object_r:regex_after_exact_t:s0
/anchored$		system_u:object_r:never_t:s0
/odd/.name		system_u:object_r:odd_t:s0
/Q[a-z]+x?		system_u:object_r:q_t:s0
`)
	for _, tc := range []struct {
		path  string
		typ   byte
		label string // "" for none
	}{
		{"/", TypeDir, "system_u:object_r:root_t:s0"},
		{"/", TypeRegular, "system_u:object_r:default_t:s0"},
		{"/usr", TypeDir, "system_u:object_r:usr_t:s0"},
		{"/usrx", TypeDir, "system_u:object_r:default_t:s0"},
		{"/usr/bin", TypeDir, "system_u:object_r:bin_t:s0"},
		{"/usr/bin/sh", TypeSymlink, "system_u:object_r:bin_t:s0"},
		{"/usr/binx", TypeRegular, "system_u:object_r:usr_t:s0"},
		{"/var/log", TypeDir, "system_u:object_r:var_log_dir_t:s0"},
		{"/var/log/messages", TypeRegular, "system_u:object_r:var_log_t:s0"},
		{"/var/log/current", TypeSymlink, "system_u:object_r:var_log_link_t:s0"},
		{"/var/log/fifo", TypeFifo, "system_u:object_r:default_t:s0"},
		{"/dev/sda", TypeBlockDev, "system_u:object_r:fixed_disk_device_t:s0"},
		{"/dev/tty0", TypeCharDev, "system_u:object_r:tty_device_t:s0"},
		{"/dev/initctl", TypeFifo, "system_u:object_r:fifo_t:s0"},
		{"/dev/log", TypeSocket, "system_u:object_r:sock_t:s0"},
		{"/tmp/private", TypeDir, ""},
		{"/tmp/private/secret", TypeRegular, ""},
		{"/tmp/public", TypeRegular, "system_u:object_r:default_t:s0"},
		// The last match wins even over a spec without regular expression
		// characters (libselinux would pick exact_t: see the package doc).
		{"/exact", TypeRegular, "system_u:object_r:regex_after_exact_t:s0"},
		// '$' ends the subject, and the type code follows the path in it.
		{"/anchored", TypeRegular, "system_u:object_r:default_t:s0"},
		// '.' matches any byte, a newline too.
		{"/odd/\nname", TypeRegular, "system_u:object_r:odd_t:s0"},
		{"/odd/xname", TypeRegular, "system_u:object_r:odd_t:s0"},
		{"/Qabc", TypeRegular, "system_u:object_r:q_t:s0"},
		{"/Qabcx", TypeRegular, "system_u:object_r:q_t:s0"},
		{"/Q", TypeRegular, "system_u:object_r:default_t:s0"},
	} {
		label, ok := p.Lookup(tc.path, tc.typ)
		if ok != (tc.label != "") || label != tc.label {
			t.Errorf("Lookup(%q, %q) = %q, %v; want %q", tc.path, tc.typ, label, ok, tc.label)
		}
	}
}

func TestResolve(t *testing.T) {
	p := mustParse(t, "/home(/.*)?\tsystem_u:object_r:home_t:s0\n/srv(/.*)?\tsystem_u:object_r:srv_t:s0\n")
	if err := p.AddSubs("subs", strings.NewReader("# aliases\n/srv/home /home\n\n/home/old /home/new\n")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/":               "/",
		"/srv":            "/srv",
		"/srv/home":       "/home",
		"/srv/home/a/b":   "/home/a/b",
		"/srv/home/old/x": "/home/new/x", // an alias met again after the first
		"/srv/homework":   "/srv/homework",
		"/home/old":       "/home/new",
		"/elsewhere/home": "/elsewhere/home",
	} {
		if got := p.Resolve(path); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", path, got, want)
		}
	}
	if l, _ := p.Label("/srv/home/user.txt", TypeRegular); l != "system_u:object_r:home_t:s0" {
		t.Errorf("Label through an alias = %q", l)
	}
}

// memFS is an OpenFunc over a map of absolute paths.
func memFS(files map[string]string) OpenFunc {
	return func(p string) (io.ReadCloser, error) {
		s, ok := files[p]
		if !ok {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

func TestLoad(t *testing.T) {
	const dir = "/etc/selinux/targeted/contexts/files/"
	full := map[string]string{
		ConfigPath:                      "# SELINUXTYPE=commented\nSELINUX=enforcing\n selinuxtype = targeted \nSELINUXTYPE=second\n",
		dir + "file_contexts":           "/opt(/.*)?\tsystem_u:object_r:opt_t:s0\n",
		dir + "file_contexts.local":     "/opt/custom(/.*)?\tsystem_u:object_r:custom_t:s0\n",
		dir + "file_contexts.homedirs":  "/opt/custom/home(/.*)?\tsystem_u:object_r:home_t:s0\n",
		dir + "file_contexts.subs":      "/srv/opt /opt\n/a /b\n",
		dir + "file_contexts.subs_dist": "/a /c\n",
	}
	p, err := Load(memFS(full))
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != "targeted" || p.Len() != 3 {
		t.Fatalf("Type %q, %d specs", p.Type, p.Len())
	}
	for path, want := range map[string]string{
		"/opt/x":                "system_u:object_r:opt_t:s0",
		"/opt/custom/x":         "system_u:object_r:custom_t:s0",
		"/opt/custom/home/u":    "system_u:object_r:home_t:s0",
		"/srv/opt/custom/thing": "system_u:object_r:custom_t:s0",
	} {
		if got, _ := p.Label(path, TypeRegular); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if got := p.Alias("/a"); got != "/c" {
		t.Errorf("subs_dist should override subs for one alias: %q", got)
	}

	for name, files := range map[string]map[string]string{
		"no config":     {},
		"no type":       {ConfigPath: "SELINUX=disabled\n"},
		"commented out": {ConfigPath: "#SELINUXTYPE=targeted\n"},
	} {
		if p, err := Load(memFS(files)); p != nil || err != nil {
			t.Errorf("%s: %v, %v; want no policy and no error", name, p, err)
		}
	}
}

func TestErrors(t *testing.T) {
	const dir = "/etc/selinux/targeted/contexts/files/"
	cfg := "SELINUXTYPE=targeted\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing file_contexts", map[string]string{ConfigPath: cfg}, dir + "file_contexts: the SELinux policy \"targeted\""},
		{"bad type code", map[string]string{ConfigPath: cfg, dir + "file_contexts": "/ok\tu:r:t:s0\n\n/x\t-x\tu:r:t:s0\n"}, dir + "file_contexts:3: invalid file type \"-x\""},
		{"no context", map[string]string{ConfigPath: cfg, dir + "file_contexts": "/x\n"}, dir + "file_contexts:1: regular expression \"/x\" has no context"},
		{"trailing data", map[string]string{ConfigPath: cfg, dir + "file_contexts": "/x -- u:r:t:s0 extra\n"}, dir + "file_contexts:1: trailing data \"extra\""},
		{"bad regex", map[string]string{ConfigPath: cfg, dir + "file_contexts": "/x(\tu:r:t:s0\n"}, dir + "file_contexts:1: regular expression \"/x(\""},
		{"backreference", map[string]string{ConfigPath: cfg, dir + "file_contexts": "/(a)\\1\tu:r:t:s0\n"}, dir + "file_contexts:1: regular expression"},
		{"local", map[string]string{ConfigPath: cfg, dir + "file_contexts": "", dir + "file_contexts.local": "/x -d\n"}, dir + "file_contexts.local:1: regular expression \"/x\" has no context"},
		{"subs", map[string]string{ConfigPath: cfg, dir + "file_contexts": "", dir + "file_contexts.subs": "/a /b /c\n"}, dir + "file_contexts.subs:1: trailing data \"/c\""},
		{"subs short", map[string]string{ConfigPath: cfg, dir + "file_contexts": "", dir + "file_contexts.subs_dist": "/a\n"}, dir + "file_contexts.subs_dist:1: alias \"/a\" has no original path"},
		{"type escapes", map[string]string{ConfigPath: "SELINUXTYPE=../../x\n"}, ConfigPath + ": SELINUXTYPE \"../../x\" is not a directory name"},
	} {
		_, err := Load(memFS(tc.files))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to begin %q", tc.name, err, tc.want)
		}
	}
	// An error other than "does not exist" is not taken for a missing file.
	broken := func(p string) (io.ReadCloser, error) { return nil, errors.New("input/output error") }
	if _, err := Load(broken); err == nil || !strings.Contains(err.Error(), ConfigPath+": input/output error") {
		t.Errorf("read error: %v", err)
	}
}

// linearLookup is the definition: every spec, last match wins.
func linearLookup(p *Policy, path string, typ byte) (string, bool) {
	subject := path + string(typ)
	for i := len(p.specs) - 1; i >= 0; i-- {
		if p.specs[i].re.MatchString(subject) {
			if p.specs[i].context == noLabel {
				return "", false
			}
			return p.specs[i].context, true
		}
	}
	return "", false
}

var types = []byte{TypeRegular, TypeDir, TypeSymlink, TypeFifo, TypeSocket, TypeBlockDev, TypeCharDev}

// TestIndexAgreesWithLinearScan checks the prefix index never hides a
// specification, on expressions built to stress literal prefixes.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	p := mustParse(t, `
/.*	a_t
/us?r(/.*)?	b_t
/usr+/x	c_t
(/usr|/opt)/lib	d_t
/usr/l(ib|ocal)(/.*)?	e_t
/usr/lib[0-9]*	f_t
/usr/lib.*\.so	g_t
/usr/(lib)?exec	h_t
/usr/libexec	-d	i_t
/USR/x	j_t
(?i)/case	k_t
/v{0}ar	l_t
/x*/y	m_t
/usr/lib/é	n_t
/usr/lib/[^/]+/z?	o_t
`)
	names := []string{"", "usr", "usrr", "ur", "opt", "lib", "libexec", "exec", "local", "lib64", "libfoo.so", "x", "y", "z", "CASE", "case", "ar", "var", "é", "USR", "a"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteString("/" + names[rng.IntN(len(names))])
		}
		path, typ := b.String(), types[rng.IntN(len(types))]
		gl, gok := p.Lookup(path, typ)
		wl, wok := linearLookup(p, path, typ)
		if gl != wl || gok != wok {
			t.Fatalf("Lookup(%q, %q) = %q, %v; a linear scan gives %q, %v", path, typ, gl, gok, wl, wok)
		}
	}
}

func FuzzLookup(f *testing.F) {
	f.Add("/usr(/.*)?\tusr_t\n/usr/bin/.*\t--\tbin_t\n", "/usr/bin/sh", byte('-'))
	f.Add("(/a|/b)+c\tx_t\n/a*\t<<none>>\n", "/a/bc", byte('d'))
	f.Add("/x{2,}y?\tx_t\n", "/xxy", byte('l'))
	f.Fuzz(func(t *testing.T, fc, path string, typ byte) {
		p, err := Parse("fuzz", strings.NewReader(fc))
		if err != nil {
			return
		}
		gl, gok := p.Lookup(path, typ)
		wl, wok := linearLookup(p, path, typ)
		if gl != wl || gok != wok {
			t.Fatalf("Lookup(%q, %q) = %q, %v; a linear scan gives %q, %v", path, typ, gl, gok, wl, wok)
		}
	})
}

// Label returns the label of path for a file of type typ with the aliases
// applied, for tests that have paths rather than a tree to walk.
func (p *Policy) Label(path string, typ byte) (string, bool) {
	return p.Lookup(p.Resolve(path), typ)
}

// Resolve applies the aliases to path one directory level at a time, from
// the root down, as fstree.Relabel does during its walk: an alias of a
// directory moves everything below it, and the moved path may meet another
// alias further down.
func (p *Policy) Resolve(path string) string {
	if len(p.aliases) == 0 || path == "/" {
		return path
	}
	resolved := ""
	for _, name := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		resolved += "/" + name
		if alias := p.aliases[resolved]; alias != "" {
			resolved = alias
		}
	}
	return resolved
}
