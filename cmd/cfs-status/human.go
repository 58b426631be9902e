package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/cfs-project/cfs/lib/sysroot"
)

// bootc's slot prefixes. Rows under a slot are right-aligned to the
// prefix's width in characters ("●" counts as one, as in bootc's output).
const (
	prefixStaged   = "  Staged image"
	prefixBooted   = "● Booted image"
	prefixRollback = "  Rollback image"
	prefixOther    = "   Other image"
)

type humanWriter struct {
	w       io.Writer
	verbose bool
	h       *sysroot.Host
	infos   map[*sysroot.Deployment]*sysroot.ImageInfo
	first   bool
}

func writeHuman(w io.Writer, h *sysroot.Host, infos map[*sysroot.Deployment]*sysroot.ImageInfo, verbose bool) {
	hw := &humanWriter{w: w, verbose: verbose, h: h, infos: infos, first: true}
	if h.Staged != nil {
		hw.slot(prefixStaged, h.Staged)
	}
	if h.Booted != nil {
		hw.slot(prefixBooted, h.Booted)
	} else {
		hw.sep()
		fmt.Fprintln(w, "System is not deployed via bootc.")
	}
	if h.Rollback != nil {
		hw.slot(prefixRollback, h.Rollback)
	}
	for _, d := range h.Other {
		hw.slot(prefixOther, d)
	}
}

// sep puts the blank line bootc prints between slots.
func (hw *humanWriter) sep() {
	if !hw.first {
		fmt.Fprintln(hw.w)
	}
	hw.first = false
}

func (hw *humanWriter) slot(prefix string, d *sysroot.Deployment) {
	hw.sep()
	info := hw.infos[d]
	img := "(no container image)"
	if d.Image != nil {
		img = d.Image.String()
	}
	fmt.Fprintf(hw.w, "%s: %s\n", prefix, img)
	width := utf8.RuneCountInString(prefix)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(hw.w, "%s%s: %s\n", strings.Repeat(" ", max(width-len(name), 0)), name, fmt.Sprintf(format, args...))
	}
	if d.ManifestDigest != "" {
		if info != nil && info.Architecture != "" {
			row("Digest", "%s (%s)", d.ManifestDigest, info.Architecture)
		} else {
			row("Digest", "%s", d.ManifestDigest)
		}
	}
	if d.Verity != "" {
		row("Verity", "%s", d.Verity)
	}
	if info != nil {
		ts := ""
		if !info.Created.IsZero() {
			ts = info.Created.Format("2006-01-02T15:04:05Z")
		}
		switch {
		case info.Version != "" && ts != "":
			row("Version", "%s (%s)", info.Version, ts)
		case info.Version != "":
			row("Version", "%s", info.Version)
		case ts != "":
			row("Timestamp", "%s", ts)
		}
	}
	if hw.verbose {
		hw.verboseRows(d, row)
	}
	if d == hw.h.Booted {
		if line := hw.h.Storage.StatusLine(hw.h.Kind); line != "" {
			row("Storage", "%s", line)
		}
	}
}

// verboseRows are the extra rows of bootc status --verbose that the disk
// can answer.
func (hw *humanWriter) verboseRows(d *sysroot.Deployment, row func(string, string, ...any)) {
	if hw.h.Kind == sysroot.KindOstree {
		row("StateRoot", "%s", d.Stateroot)
		row("Deploy serial", "%d", d.DeploySerial)
		row("Commit", "%s", d.Commit)
		return
	}
	if d == hw.h.Booted {
		if d.VerityOptional {
			row("FsVerity", "Not Enforced")
		} else {
			row("FsVerity", "Enforced")
		}
	}
	if d.Staged {
		if hw.h.StagedFinalizationLocked {
			row("Download-only", "yes")
		} else {
			row("Download-only", "no")
		}
	}
}
