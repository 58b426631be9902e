package sysroot

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// maxEntrySize bounds what we read of one bootloader file: real entries
// are a few hundred bytes, and the files are untrusted input.
const maxEntrySize = 64 << 10

// BLSEntry is one Boot Loader Specification type #1 entry, with every
// key it holds, so that an entry read can be written back (bootc
// re-sorts the booted entry when it stages).
type BLSEntry struct {
	Path      string // file it was read from
	Title     string
	Version   string
	SortKey   string
	Linux     string
	Initrd    []string
	Efi       string // value of the "efi" or "uki" key: a UKI entry
	EfiKey    string // which of the two ("efi" or "uki"), "" without one
	Options   string
	MachineID string
	// Extra are the other keys, in file order.
	Extra  [][2]string
	Staged bool // from loader/entries.staged: not yet swapped in

	menuentry bool // from bootc's own grub2/user.cfg
}

// Option returns the value of the last key=value kernel argument named key.
func (e *BLSEntry) Option(key string) (string, bool) {
	val, found := "", false
	for _, arg := range splitCmdline(e.Options) {
		if k, v, ok := strings.Cut(arg, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// ParseBLSEntry reads one entry file.
func ParseBLSEntry(path string) (*BLSEntry, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return ParseBLS(path, data)
}

// ParseBLS parses the text of an entry; path names it in errors. Each
// line is a key, blanks (spaces or tabs), and the value; several options
// lines join, as the BLS says.
func ParseBLS(path string, data []byte) (*BLSEntry, error) {
	e := &BLSEntry{Path: path}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, val := line, ""
		if i := strings.IndexAny(line, " \t"); i > 0 {
			key, val = line[:i], strings.TrimSpace(line[i+1:])
		}
		if val == "" {
			return nil, fmt.Errorf("%s: line %d: key %q has no value", path, n+1, key)
		}
		switch key {
		case "title":
			e.Title = val
		case "version":
			e.Version = val
		case "sort-key":
			e.SortKey = val
		case "linux":
			e.Linux = val
		case "initrd":
			e.Initrd = append(e.Initrd, val)
		case "efi", "uki":
			e.Efi, e.EfiKey = val, key
		case "options":
			// Several options lines concatenate (BLS spec).
			if e.Options != "" {
				e.Options += " "
			}
			e.Options += val
		case "machine-id":
			e.MachineID = val
		default:
			e.Extra = append(e.Extra, [2]string{key, val})
		}
	}
	if e.Linux == "" && e.Efi == "" {
		return nil, fmt.Errorf("%s: neither linux nor efi/uki key", path)
	}
	return e, nil
}

// readBLSDir reads every *.conf in dir whose name has prefix; a missing
// dir is no entries.
func readBLSDir(dir, prefix string, staged bool) ([]*BLSEntry, error) {
	names, err := filepath.Glob(filepath.Join(dir, prefix+"*.conf"))
	if err != nil {
		return nil, err
	}
	var out []*BLSEntry
	for _, p := range names {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		e, err := ParseBLSEntry(p)
		if err != nil {
			return nil, err
		}
		e.Staged = staged
		out = append(out, e)
	}
	sortBLS(out)
	return out, nil
}

// sortBLS orders entries as systemd-boot and GRUB's blscfg list them, first
// = default: sort-key ascending (entries with one first), then version
// descending, then file name descending.
func sortBLS(es []*BLSEntry) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.SortKey == "") != (b.SortKey == "") {
			return a.SortKey != ""
		}
		if a.SortKey != b.SortKey {
			return a.SortKey < b.SortKey
		}
		if c := compareVersions(a.Version, b.Version); c != 0 {
			return c > 0
		}
		return filepath.Base(a.Path) > filepath.Base(b.Path)
	})
}

// compareVersions compares numerically where both are numbers (ostree's
// "version 10" must beat "version 9"), else bytewise.
func compareVersions(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		switch {
		case na < nb:
			return -1
		case na > nb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEntrySize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxEntrySize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxEntrySize)
	}
	return data, nil
}

// SortBLS sorts entries in boot order, first = default.
func SortBLS(es []*BLSEntry) { sortBLS(es) }
