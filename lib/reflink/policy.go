// Package reflink shares file contents between files with FICLONE where the
// filesystem allows it, falls back to a real byte copy where the caller
// allows that, and lets tests verify sharing with FIEMAP.
//
// Copies here never go through io.Copy or copy_file_range: on XFS and btrfs
// those reflink implicitly, so a "copy" would silently share extents, and
// across filesystems they fail with EXDEV or fall back without saying so.
package reflink

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// Policy says whether a clone may, must or must not share extents.
// The zero value is deliberately invalid so that a caller who forgot to
// choose gets an error instead of a silent copy or a surprising failure.
type Policy int

const (
	// Always requires FICLONE; a refusal is an error (config "enabled").
	Always Policy = iota + 1
	// Auto tries FICLONE and copies the bytes if it is refused
	// (config "enabled-with-copy").
	Auto
	// Never copies the bytes, so the two files share nothing.
	Never
)

var policyNames = map[Policy]string{Always: "always", Auto: "auto", Never: "never"}

// ParsePolicy accepts "always", "auto" or "never", as in --reflink=.
func ParsePolicy(s string) (Policy, error) {
	for p, name := range policyNames {
		if strings.EqualFold(s, name) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("invalid reflink policy %q: want always, auto or never", s)
}

func (p Policy) String() string {
	if name, ok := policyNames[p]; ok {
		return name
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// MarshalText and UnmarshalText let a Policy be a flag.TextVar or a config
// field directly.
func (p Policy) MarshalText() ([]byte, error) {
	if _, ok := policyNames[p]; !ok {
		return nil, fmt.Errorf("invalid reflink policy %d", int(p))
	}
	return []byte(p.String()), nil
}

func (p *Policy) UnmarshalText(text []byte) error {
	parsed, err := ParsePolicy(string(text))
	if err != nil {
		return err
	}
	*p = parsed
	return nil
}

// Result says what CloneFile actually did. The zero value means nothing was
// done, which is what comes back with an error.
type Result int

const (
	Cloned Result = iota + 1 // extents are shared with the source
	Copied                   // the bytes were copied; nothing is shared
)

func (r Result) String() string {
	switch r {
	case Cloned:
		return "cloned"
	case Copied:
		return "copied"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// Stats counts clones and copies across many goroutines, so that a command
// running under Auto can tell the user how much was really copied.
// Read the fields of a Snapshot, not of a Stats still being added to.
type Stats struct {
	Cloned, Copied           int64
	ClonedBytes, CopiedBytes int64
}

// Add records one file of the given size.
func (s *Stats) Add(r Result, bytes int64) {
	switch r {
	case Cloned:
		atomic.AddInt64(&s.Cloned, 1)
		atomic.AddInt64(&s.ClonedBytes, bytes)
	case Copied:
		atomic.AddInt64(&s.Copied, 1)
		atomic.AddInt64(&s.CopiedBytes, bytes)
	}
}

// Snapshot reads the counters atomically.
func (s *Stats) Snapshot() Stats {
	return Stats{
		Cloned:      atomic.LoadInt64(&s.Cloned),
		Copied:      atomic.LoadInt64(&s.Copied),
		ClonedBytes: atomic.LoadInt64(&s.ClonedBytes),
		CopiedBytes: atomic.LoadInt64(&s.CopiedBytes),
	}
}

func (s *Stats) String() string {
	v := s.Snapshot()
	return fmt.Sprintf("%d cloned (%d bytes), %d copied (%d bytes)", v.Cloned, v.ClonedBytes, v.Copied, v.CopiedBytes)
}
