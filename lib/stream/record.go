// Package stream reads and writes the object list: the newline-delimited
// JSON that cfs tools pass to each other on stdin/stdout. A stream is one
// image record, the merged filesystem tree of that image in pre-order with
// siblings sorted bytewise, and an end record that seals the count and the
// sha256 of everything before it. docs/stream.md is the normative
// description; this package is its only implementation.
package stream

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Version is the major version this package writes and the only one it
// reads. Fields may be added without changing it; readers ignore fields
// they do not know.
const Version = 1

// Type is the "type" field of a record.
type Type string

const (
	TypeImage    Type = "image"
	TypeDir      Type = "dir"
	TypeFile     Type = "file"
	TypeSymlink  Type = "symlink"
	TypeHardlink Type = "hardlink"
	TypeCharDev  Type = "chardev"
	TypeBlockDev Type = "blockdev"
	TypeFifo     Type = "fifo"
	TypeSocket   Type = "socket"
	TypeEnd      Type = "end"
)

// InlineMax is the largest regular file whose bytes travel in the stream
// itself rather than as an object; it matches the composefs inline limit.
const InlineMax = 64

// Image is the first record: where the tree came from and which stores
// already hold it. Manifest and Config are the exact bytes of the registry
// documents, kept as strings so digests can be recomputed from them.
type Image struct {
	Version        int     `json:"version"`
	Source         string  `json:"source,omitempty"`
	ManifestDigest string  `json:"manifestDigest"`
	ConfigDigest   string  `json:"configDigest"`
	Manifest       string  `json:"manifest"`
	Config         string  `json:"config"`
	Layers         []Layer `json:"layers"`
	Stores         Stores  `json:"stores"`
}

// Layer names one layer blob and the digest of its uncompressed tar.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	MediaType string `json:"mediaType,omitempty"`
	Size      int64  `json:"size,omitempty"`
}

// Stores says where the image is held; each tool in a pipeline adds the
// store it wrote.
type Stores struct {
	Composefs         *ComposefsStore         `json:"composefs,omitempty"`
	ContainersStorage *ContainersStorageStore `json:"containersStorage,omitempty"`
	Ostree            *OstreeStore            `json:"ostree,omitempty"`
}

// ComposefsStore locates the image in a composefs repository.
type ComposefsStore struct {
	Repo  string `json:"repo"`
	Tag   string `json:"tag,omitempty"`
	Image string `json:"image,omitempty"` // fs-verity hex of the EROFS image
}

// ContainersStorageStore locates the image in a containers-storage store.
type ContainersStorageStore struct {
	Root    string `json:"root"`
	RunRoot string `json:"runRoot,omitempty"`
	ImageID string `json:"imageID"`
}

// OstreeStore locates the repository the file objects were written to.
type OstreeStore struct {
	Repo string `json:"repo"`
	Mode string `json:"mode,omitempty"` // "bare" or "bare-user"
}

// Entry is one node of the merged tree. Which fields matter depends on
// Type; the reader checks the ones each type needs.
//
// Path, Target, LinkTo and Src are byte strings: a name that is not valid
// UTF-8 travels base64-encoded in pathBase64/targetBase64/linkToBase64/
// srcBase64 instead,
// because a JSON string cannot carry it.
type Entry struct {
	Type      Type              `json:"-"`
	Path      string            `json:"-"`
	Mode      uint32            `json:"mode"` // permission bits incl. setuid/setgid/sticky, never the file type
	UID       uint32            `json:"uid"`
	GID       uint32            `json:"gid"`
	Mtime     int64             `json:"mtime"`
	MtimeNsec uint32            `json:"mtimeNsec,omitempty"`
	Xattrs    map[string][]byte `json:"xattrs,omitempty"`

	// Regular files.
	Size      int64  `json:"size,omitempty"`
	Inline    []byte `json:"inline,omitempty"`
	Composefs string `json:"composefs,omitempty"` // fs-verity digest, hex
	Ostree    string `json:"ostree,omitempty"`    // ostree content checksum, hex
	Src       string `json:"-"`                   // absolute path of a file holding the bytes now

	Target string `json:"-"` // symlinks
	LinkTo string `json:"-"` // hardlinks: path of an earlier file entry
	Rdev   uint64 `json:"rdev,omitempty"`
}

// End closes the stream. Entries counts the tree entries (not the image
// record); Bytes and SHA256 cover every byte before the end line.
type End struct {
	Entries int64  `json:"entries"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
}

// entryJSON is Entry as it appears on the wire, with the byte-string fields
// split into their UTF-8 and base64 forms.
type entryJSON struct {
	Type         Type    `json:"type"`
	Path         *string `json:"path,omitempty"`
	PathBase64   []byte  `json:"pathBase64,omitempty"`
	Target       *string `json:"target,omitempty"`
	TargetBase64 []byte  `json:"targetBase64,omitempty"`
	LinkTo       *string `json:"linkTo,omitempty"`
	LinkToBase64 []byte  `json:"linkToBase64,omitempty"`
	Src          *string `json:"src,omitempty"`
	SrcBase64    []byte  `json:"srcBase64,omitempty"`
	entryFields
}

type entryFields Entry

func joinBytes(field string, s *string, b []byte) (string, bool, error) {
	switch {
	case s != nil && b != nil:
		return "", false, fmt.Errorf("both %s and %sBase64 are set", field, field)
	case s != nil:
		return *s, true, nil
	case b != nil:
		if utf8.Valid(b) {
			return "", false, fmt.Errorf("%sBase64 holds valid UTF-8; it must travel as %s", field, field)
		}
		return string(b), true, nil
	}
	return "", false, nil
}

// MarshalJSON writes the wire form of e (encodeEntry).
func (e Entry) MarshalJSON() ([]byte, error) {
	return encodeEntry(nil, &e), nil
}

// UnmarshalJSON reads the wire form into e.
func (e *Entry) UnmarshalJSON(data []byte) error {
	var w entryJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*e = Entry(w.entryFields)
	e.Type = w.Type
	var err error
	var ok bool
	if e.Path, ok, err = joinBytes("path", w.Path, w.PathBase64); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%s record has no path", e.Type)
	}
	if e.Target, _, err = joinBytes("target", w.Target, w.TargetBase64); err != nil {
		return err
	}
	if e.LinkTo, _, err = joinBytes("linkTo", w.LinkTo, w.LinkToBase64); err != nil {
		return err
	}
	if e.Src, _, err = joinBytes("src", w.Src, w.SrcBase64); err != nil {
		return err
	}
	return nil
}

// IsEntryType reports whether t is the type of a tree entry (neither the
// image nor the end record).
func IsEntryType(t Type) bool {
	switch t {
	case TypeDir, TypeFile, TypeSymlink, TypeHardlink, TypeCharDev, TypeBlockDev, TypeFifo, TypeSocket:
		return true
	}
	return false
}
