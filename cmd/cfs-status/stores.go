package main

import (
	"fmt"
	"io"

	"github.com/cfs-project/cfs/lib/hoststatus"
)

func writeStoresHuman(w io.Writer, s *hoststatus.Stores) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Stores:")
	for _, e := range []struct {
		name string
		st   hoststatus.Store
	}{{"containers-storage", s.ContainersStorage}, {"composefs", s.Composefs}, {"ostree", s.Ostree}} {
		fmt.Fprintf(w, "  %-19s %s%s\n", e.name+":", e.st.Path, presence(e.st))
		o := e.st.Objects
		if o == nil {
			continue
		}
		what := "objects"
		if e.name == "containers-storage" {
			what = "layer files"
		}
		fmt.Fprintf(w, "  %-19s %d %s, %s", "", o.Files, what, size(o.Bytes))
		if o.SharingUnknown {
			fmt.Fprint(w, "; sharing unknown (no FIEMAP)")
		} else {
			fmt.Fprintf(w, "; %s shared, %s alone", size(o.SharedBytes), size(o.AloneBytes))
		}
		if o.Partial {
			fmt.Fprint(w, " (partial: scan time limit reached)")
		}
		fmt.Fprintln(w)
		if o.Error != "" {
			fmt.Fprintf(w, "  %-19s error: %s\n", "", o.Error)
		}
	}
	switch {
	case s.ReflinksSupported == nil:
		fmt.Fprintf(w, "  %-19s unknown (%s)\n", "reflinks:", s.ReflinkError)
	case *s.ReflinksSupported:
		fmt.Fprintf(w, "  %-19s yes\n", "reflinks:")
	default:
		fmt.Fprintf(w, "  %-19s no (stores cannot share extents)\n", "reflinks:")
	}
}

func presence(st hoststatus.Store) string {
	if st.Present {
		return ""
	}
	return " (absent)"
}

// size prints exact bytes, with a binary-unit hint when large.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}
