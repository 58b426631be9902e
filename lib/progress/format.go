package progress

import (
	"fmt"
	"strings"
)

// Bar draws done/total as a bar of width characters for the terminal
// line; an unknown total (0) shows a full bar.
func Bar(done, total int64, width int) string {
	filled := width
	if total > 0 && done < total {
		filled = int(max(done, 0) * int64(width) / total)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(" ", width-filled) + "]"
}

// HumanBytes formats n bytes with binary units: "512 B", "1.5 KiB", "3.0 GiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Layers adds up the progress of layers fetched in parallel: bytes read
// of each, and how many are finished.
type Layers struct {
	done     map[int]int64
	finished int
}

// NewLayers returns an empty Layers.
func NewLayers() *Layers { return &Layers{done: map[int]int64{}} }

// Read records that layer has read done bytes so far.
func (l *Layers) Read(layer int, done int64) { l.done[layer] = done }

// Finish records that layer is complete with bytes bytes (0 for a layer
// that was already present and read nothing).
func (l *Layers) Finish(layer int, bytes int64) {
	if bytes > 0 {
		l.done[layer] = bytes
	}
	l.finished++
}

// Bytes is the sum over the layers; Of is one layer's; Finished the count
// of finished layers.
func (l *Layers) Bytes() int64 {
	var sum int64
	for _, n := range l.done {
		sum += n
	}
	return sum
}

func (l *Layers) Of(layer int) int64 { return l.done[layer] }

func (l *Layers) Finished() int { return l.finished }
