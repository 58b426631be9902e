// Package selabel computes the SELinux label of each path of an image from
// the policy the image itself ships, the way composefs-rs (composefs-boot's
// selabel, which bootc runs before it synthesizes an ostree commit) does:
//
//   - /etc/selinux/config names the policy (SELINUXTYPE=); without the file
//     or the key there is no policy, and no path has a label;
//   - /etc/selinux/<type>/contexts/files/ holds file_contexts (required),
//     file_contexts.local and file_contexts.homedirs, read in that order,
//     and file_contexts.subs and file_contexts.subs_dist, the path aliases;
//   - the last specification whose regular expression matches the whole
//     path, and whose file type matches, gives the label; "<<none>>" or no
//     match means no label.
//
// libselinux additionally moves specifications without regular expression
// characters behind all others, and reads file_contexts.homedirs before
// file_contexts.local; composefs-rs does neither, and neither do we, since
// the labels must equal the ones bootc computes. semodule writes policies
// with the exact specifications last anyway, so the first difference shows
// only in hand-written files (TestHostPolicy checks a real policy).
package selabel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
)

// File type codes of selabel_file(5), as file_contexts writes them after "-".
const (
	TypeRegular  = '-'
	TypeDir      = 'd'
	TypeSymlink  = 'l'
	TypeFifo     = 'p'
	TypeSocket   = 's'
	TypeBlockDev = 'b'
	TypeCharDev  = 'c'
)

// Xattr is the extended attribute that carries a label.
const Xattr = "security.selinux"

// ConfigPath is where an image names its policy.
const ConfigPath = "/etc/selinux/config"

// noLabel is the context that means "leave the path unlabelled".
const noLabel = "<<none>>"

// SpecFiles are the specification files of a policy, in the order they are
// read: a later file's specifications win over an earlier one's.
var SpecFiles = []string{"file_contexts", "file_contexts.local", "file_contexts.homedirs"}

// SubsFiles are the alias files, in the order they are read: a later
// file's alias for the same path wins.
var SubsFiles = []string{"file_contexts.subs", "file_contexts.subs_dist"}

// OpenFunc opens a regular file of the image by absolute path, without
// following symlinks. For a missing file its error must satisfy
// errors.Is(err, fs.ErrNotExist).
type OpenFunc func(path string) (io.ReadCloser, error)

type spec struct {
	expr string // as written in the file
	re   *regexp.Regexp
	// literals every match contains beyond the indexed prefix: checking
	// them is far cheaper than running re, and rejects most candidates.
	literals []string
	typ      byte // 0: any type
	context  string
}

// Policy maps paths to labels.
type Policy struct {
	// Type is the policy's name, SELINUXTYPE in /etc/selinux/config.
	Type    string
	specs   []spec
	aliases map[string]string
	index   *trieNode
}

// Load reads the policy of an image through open. It returns nil and no
// error when the image names no policy: it has no /etc/selinux/config, or
// the file has no SELINUXTYPE. A policy that is named but missing or
// malformed is an error naming the file and line.
func Load(open OpenFunc) (*Policy, error) {
	policyType, err := readConfig(open)
	if err != nil || policyType == "" {
		return nil, err
	}
	dir := "/etc/selinux/" + policyType + "/contexts/files/"
	p := &Policy{Type: policyType, aliases: make(map[string]string)}
	for i, name := range SpecFiles {
		found, err := readFile(open, dir+name, p.parseSpecs)
		if err != nil {
			return nil, err
		}
		if !found && i == 0 {
			return nil, fmt.Errorf("%s: the SELinux policy %q named in %s has no file_contexts", dir+name, policyType, ConfigPath)
		}
	}
	for _, name := range SubsFiles {
		if _, err := readFile(open, dir+name, p.parseSubs); err != nil {
			return nil, err
		}
	}
	p.buildIndex()
	return p, nil
}

// Parse builds a policy from file_contexts text alone, for tests and tools
// that have the file at hand. name appears in errors.
func Parse(name string, fileContexts io.Reader) (*Policy, error) {
	p := &Policy{aliases: make(map[string]string)}
	if err := p.parseSpecs(name, fileContexts); err != nil {
		return nil, err
	}
	p.buildIndex()
	return p, nil
}

// AddSubs adds the aliases of a file_contexts.subs text to p.
func (p *Policy) AddSubs(name string, subs io.Reader) error { return p.parseSubs(name, subs) }

func readFile(open OpenFunc, path string, parse func(string, io.Reader) error) (bool, error) {
	f, err := open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	return true, parse(path, f)
}

// readConfig returns SELINUXTYPE from the image's config, "" when there is
// none. Like composefs-rs it takes the first line whose key is SELINUXTYPE
// in any case; a commented line has "#" in its key and so never counts.
func readConfig(open OpenFunc) (string, error) {
	var policyType string
	found, err := readFile(open, ConfigPath, func(name string, r io.Reader) error {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			key, value, ok := strings.Cut(sc.Text(), "=")
			if ok && strings.EqualFold(strings.TrimSpace(key), "SELINUXTYPE") {
				policyType = strings.TrimSpace(value)
				break
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if !found || err != nil {
		return "", err
	}
	if strings.ContainsAny(policyType, "/\x00") || policyType == "." || policyType == ".." {
		return "", fmt.Errorf("%s: SELINUXTYPE %q is not a directory name", ConfigPath, policyType)
	}
	return policyType, nil
}

func lines(name string, r io.Reader, fn func(lineNo int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if err := fn(n, fields); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (p *Policy) parseSpecs(name string, r io.Reader) error {
	return lines(name, r, func(_ int, f []string) error {
		if len(f) < 2 {
			return fmt.Errorf("regular expression %q has no context", f[0])
		}
		var typ byte
		rest := f[1:]
		if strings.HasPrefix(rest[0], "-") {
			if len(rest[0]) != 2 || strings.IndexByte("-dlpsbc", rest[0][1]) < 0 {
				return fmt.Errorf("invalid file type %q (one of -- -d -l -p -s -b -c)", rest[0])
			}
			typ, rest = rest[0][1], rest[1:]
		}
		switch {
		case len(rest) == 0:
			return fmt.Errorf("regular expression %q has no context", f[0])
		case len(rest) > 1:
			return fmt.Errorf("trailing data %q after the context", strings.Join(rest[1:], " "))
		}
		context := rest[0]
		// composefs-rs matches "^(regex)T$" against the path followed by
		// its type code, with '.' matching any byte but NUL (its line
		// terminator is NUL): so (?s), and the type code inside the match.
		typePattern := "."
		if typ != 0 {
			typePattern = regexp.QuoteMeta(string(typ))
		}
		re, err := regexp.Compile(`(?s)^(` + f[0] + `)` + typePattern + `$`)
		if err != nil {
			// Say what is wrong with the expression as written, not with
			// our wrapping of it, when it is wrong on its own.
			if _, perr := syntax.Parse(f[0], syntax.Perl); perr != nil {
				err = perr
			}
			return fmt.Errorf("regular expression %q: %v", f[0], err)
		}
		p.specs = append(p.specs, spec{expr: f[0], re: re, typ: typ, context: context})
		return nil
	})
}

func (p *Policy) parseSubs(name string, r io.Reader) error {
	return lines(name, r, func(_ int, f []string) error {
		switch {
		case len(f) < 2:
			return fmt.Errorf("alias %q has no original path", f[0])
		case len(f) > 2:
			return fmt.Errorf("trailing data %q after the original path", strings.Join(f[2:], " "))
		}
		p.aliases[f[0]] = f[1]
		return nil
	})
}

// Alias returns the path whose label p should get instead of its own, or
// "" when p is not an alias. Aliases apply to whole paths; a caller walking
// a tree applies them at each directory, so they reach everything below.
func (p *Policy) Alias(path string) string { return p.aliases[path] }

// Lookup returns the label of path, an absolute path after aliasing, for a
// file of type typ (a Type constant); ok is false when path has no label.
func (p *Policy) Lookup(path string, typ byte) (label string, ok bool) {
	subject := path + string(typ)
	cands := p.index.candidates(subject)
	// The last specification wins: try them from the end.
	for i := len(cands) - 1; i >= 0; i-- {
		s := &p.specs[cands[i]]
		if s.typ != 0 && s.typ != typ || !containsAll(subject, s.literals) {
			continue
		}
		if s.re.MatchString(subject) {
			if s.context == noLabel {
				return "", false
			}
			return s.context, true
		}
	}
	return "", false
}

// Len is the number of specifications.
func (p *Policy) Len() int { return len(p.specs) }

// The index narrows the specifications for a path to those whose literal
// prefix (the bytes every match must begin with) the path starts with: a
// real policy has thousands of specifications and a path matches a few.
type trieNode struct {
	specs    []int // ending here, ascending
	children map[byte]*trieNode
}

func (p *Policy) buildIndex() {
	root := &trieNode{}
	for i := range p.specs {
		n := root
		prefix, literals := literalsOf(p.specs[i].re.String())
		p.specs[i].literals = literals
		for _, c := range []byte(prefix) {
			if n.children == nil {
				n.children = make(map[byte]*trieNode)
			}
			next := n.children[c]
			if next == nil {
				next = &trieNode{}
				n.children[c] = next
			}
			n = next
		}
		n.specs = append(n.specs, i)
	}
	p.index = root
}

// candidates returns, in ascending order, the specifications whose prefix
// subject (the path and its type code) starts with.
func (n *trieNode) candidates(subject string) []int {
	var out []int
	sorted := true
	for i := 0; ; i++ {
		if len(n.specs) > 0 {
			if len(out) > 0 && n.specs[0] < out[len(out)-1] {
				sorted = false
			}
			out = append(out, n.specs...)
		}
		if i == len(subject) {
			break
		}
		if n = n.children[subject[i]]; n == nil {
			break
		}
	}
	if !sorted {
		sort.Ints(out)
	}
	return out
}

func containsAll(s string, literals []string) bool {
	for _, l := range literals {
		if !strings.Contains(s, l) {
			return false
		}
	}
	return true
}

// literalsOf returns the string every match of the compiled expression
// begins with, and other strings of two bytes or more every match
// contains. Either may fall short of what the expression requires (that
// only costs time) but never ask for more (a spec would be missed).
func literalsOf(expr string) (prefix string, literals []string) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", nil
	}
	re = re.Simplify()
	var b bytes.Buffer
	prefixOf(re, &b)
	prefix = b.String()
	for _, l := range requiredLiterals(re, nil) {
		if len(l) >= 2 && !strings.Contains(prefix, l) {
			literals = append(literals, l)
		}
	}
	return prefix, literals
}

// requiredLiterals appends to out the ASCII literal runs that every match
// of re contains.
func requiredLiterals(re *syntax.Regexp, out []string) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return out
		}
		var b strings.Builder
		for _, r := range re.Rune {
			if r >= 0x80 {
				break
			}
			b.WriteByte(byte(r))
		}
		return append(out, b.String())
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0], out)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			out = requiredLiterals(sub, out)
		}
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0], out)
		}
	}
	return out
}

// prefixOf appends re's literal prefix to b and reports whether re is
// exactly that literal, so that a concatenation may go on past it.
func prefixOf(re *syntax.Regexp, b *bytes.Buffer) bool {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return false
		}
		for _, r := range re.Rune {
			if r >= 0x80 {
				return false
			}
			b.WriteByte(byte(r))
		}
		return true
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpBeginLine:
		return true
	case syntax.OpCapture:
		return prefixOf(re.Sub[0], b)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !prefixOf(sub, b) {
				return false
			}
		}
		return true
	case syntax.OpPlus:
		prefixOf(re.Sub[0], b)
		return false
	}
	return false
}
