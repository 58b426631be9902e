package pull

import (
	"fmt"
	"strings"

	"github.com/cfs-project/cfs/lib/progress"
)

// Report returns a progress callback for a pull from src: a bar of the
// bytes fetched over all layers, a line per finished layer, and bootc's
// ProgressBytes events for --progress-fd.
func Report(rep *progress.Reporter, src *Source) func(Event) {
	var total int64
	for _, l := range src.Layers {
		total += l.Size
	}
	layers := progress.NewLayers()
	return func(ev Event) {
		short := shortDigest(ev.Digest)
		required, line := false, ""
		switch ev.Kind {
		case "layer-bytes":
			layers.Read(ev.Layer, ev.Done)
		case "layer-done":
			layers.Finish(ev.Layer, ev.Bytes)
			required = true
			line = fmt.Sprintf("layer %d/%d %s: %s, %d objects new, %d present", ev.Layer+1, ev.Layers, short, progress.HumanBytes(ev.Bytes), ev.Stats.ObjectsNew, ev.Stats.ObjectsPresent)
		case "layer-present":
			layers.Finish(ev.Layer, 0)
			required = true
			line = fmt.Sprintf("layer %d/%d %s: already in the repository", ev.Layer+1, ev.Layers, short)
		default:
			return
		}
		sum := layers.Bytes()
		if line == "" {
			line = fmt.Sprintf("pulling %s %s of %s, %d/%d layers", progress.Bar(sum, total, 30), progress.HumanBytes(sum), progress.HumanBytes(total), layers.Finished(), len(src.Layers))
		}
		rep.Progress(progress.Bytes{
			Task: "pulling", Description: "Pulling composefs image", ID: "composefs-pull",
			Bytes: sum, BytesTotal: total, Steps: int64(layers.Finished()), StepsTotal: int64(len(src.Layers)),
			Subtasks: []progress.SubTask{{Subtask: "composefs_layer", Description: "Layer: " + short, ID: short, Bytes: layers.Of(ev.Layer), BytesTotal: ev.Bytes}},
		}, required, line)
	}
}

// ReportCStorage returns the progress callback of an import from
// containers-storage: a line and a ProgressBytes event per finished layer.
func ReportCStorage(rep *progress.Reporter) func(Event) {
	return func(ev Event) {
		if ev.Kind != "layer-done" && ev.Kind != "layer-present" {
			return
		}
		what := "already in the repository"
		if ev.Kind == "layer-done" {
			what = fmt.Sprintf("%s, %d objects new, %d present", progress.HumanBytes(ev.Bytes), ev.Stats.ObjectsNew, ev.Stats.ObjectsPresent)
		}
		rep.Progress(progress.Bytes{Task: "importing", Description: "Importing from containers-storage", ID: "cstorage-import",
			Steps: int64(ev.Layer + 1), StepsTotal: int64(ev.Layers)}, true, fmt.Sprintf("layer %d/%d %s: %s", ev.Layer+1, ev.Layers, shortDigest(ev.Digest), what))
	}
}

func shortDigest(d string) string {
	short := strings.TrimPrefix(d, "sha256:")
	if len(short) > 20 {
		short = short[:20]
	}
	return short
}

// Lines is the human summary of a pull, one line each.
func (s *Summary) Lines() []string {
	lines := []string{
		fmt.Sprintf("%s: manifest %s, composefs image %s, tag %s", s.Source, s.ManifestDigest, s.Image, s.Tag),
		fmt.Sprintf("layers fetched %d, already present %d; objects new %d (%s), already present %d",
			s.LayersFetched, s.LayersPresent, s.ObjectsNew, progress.HumanBytes(s.BytesNew), s.ObjectsPresent),
	}
	if s.ImpliedDirs > 0 {
		lines = append(lines, fmt.Sprintf("note: layers used %d parent directories without listing them; created as 0755 root:root", s.ImpliedDirs))
	}
	return append(lines, BootLines(s.BootImage, s.BootNote)...)
}

// BootLines report a pull's boot image: its id (the composefs= a native
// host boots with) and any note on it.
func BootLines(bootImage, note string) []string {
	var lines []string
	if bootImage != "" {
		lines = append(lines, "boot image "+bootImage)
	}
	if note != "" {
		lines = append(lines, "note: "+note)
	}
	return lines
}
