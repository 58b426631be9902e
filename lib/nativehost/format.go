package nativehost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cfs-project/cfs/lib/bootimage"
	"github.com/cfs-project/cfs/lib/sysroot"
)

// OSRelease is what the entries say about an image, from its
// /usr/lib/os-release as composefs-boot's os_release.rs reads it.
type OSRelease struct {
	ID      string // ID, "bootc" when absent
	Title   string // PRETTY_NAME, NAME or ID; else the deployment id
	Version string // VERSION_ID or VERSION; else the deployment id
}

// parseOSRelease reads os-release(5) text as composefs-rs does
// (lib/bootimage), with bootc's defaults for what is missing.
func parseOSRelease(data []byte, id string) OSRelease {
	return osReleaseFrom(bootimage.ParseOSRelease(string(data)), id)
}

func osReleaseFrom(o bootimage.OSRelease, id string) OSRelease {
	r := OSRelease{ID: o.ID(), Title: o.PrettyName(), Version: o.Version()}
	if r.ID == "" {
		r.ID = "bootc"
	}
	if r.Title == "" {
		r.Title = id
	}
	if r.Version == "" {
		r.Version = id
	}
	return r
}

// originText is the origin file bootc writes (state.rs): tini's Display,
// "[section]" then "key = value" lines, an empty line between sections,
// a single newline at the end.
func originText(imageRef, bootType, bootDigest, manifestDigest string) []byte {
	return []byte(fmt.Sprintf("[origin]\ncontainer-image-reference = %s\n\n[boot]\nboot_type = %s\ndigest = %s\n\n[image]\nmanifest_digest = %s\n",
		imageRef, bootType, bootDigest, manifestDigest))
}

// stagedJSON is /run/composefs/staged-deployment: canonical JSON (keys
// sorted, compact), as bootc's to_canon_json_vec writes it.
func stagedJSON(id string, locked bool) []byte {
	b, _ := json.Marshal(struct {
		DeplID             string `json:"depl_id"`
		FinalizationLocked bool   `json:"finalization_locked"`
	}{id, locked})
	return b
}

// entry is a BLS type #1 entry as bootc writes it (bls_config.rs): title,
// version, then linux + initrd + options (or efi/uki), machine-id,
// sort-key, then any other keys, one "key value" line each.
type entry struct {
	Title, Version string
	Linux          string
	Initrd         []string
	Options        string
	Efi            string // "efi" or "uki" value for a UKI entry
	EfiKey         string // "efi" (default) or "uki"
	MachineID      string
	SortKey        string
	Extra          [][2]string
}

func (e *entry) text() []byte {
	var b bytes.Buffer
	line := func(k, v string) { b.WriteString(k + " " + v + "\n") }
	line("title", e.Title)
	line("version", e.Version)
	if e.Efi != "" {
		k := e.EfiKey
		if k == "" {
			k = "efi"
		}
		line(k, e.Efi)
	} else {
		line("linux", e.Linux)
		for _, i := range e.Initrd {
			line("initrd", i)
		}
		line("options", e.Options)
	}
	if e.MachineID != "" {
		line("machine-id", e.MachineID)
	}
	if e.SortKey != "" {
		line("sort-key", e.SortKey)
	}
	for _, kv := range e.Extra {
		line(kv[0], kv[1])
	}
	return b.Bytes()
}

// entryOf is an entry read (lib/sysroot's parser) as it is written back
// (staging demotes the booted entry, rollback swaps the order): every key
// is kept.
func entryOf(be *sysroot.BLSEntry) *entry {
	return &entry{
		Title: be.Title, Version: be.Version, Linux: be.Linux, Initrd: be.Initrd, Options: be.Options,
		Efi: be.Efi, EfiKey: be.EfiKey, MachineID: be.MachineID, SortKey: be.SortKey, Extra: be.Extra,
	}
}

// entryFileName is bootc's type1_entry_conf_file_name: the os ID with
// '-' made '_', the version, and 1 for the entry that boots first, 0 for
// the other.
func entryFileName(osID, version string, primary bool) string {
	n := "0"
	if primary {
		n = "1"
	}
	return "bootc_" + strings.ReplaceAll(osID, "-", "_") + "-" + version + "-" + n + ".conf"
}

// sortKey is bootc's: bootc-<os ID>-0 sorts first (primary), -1 second.
func sortKey(osID string, primary bool) string {
	if primary {
		return "bootc-" + osID + "-0"
	}
	return "bootc-" + osID + "-1"
}

// setCmdlineArg replaces key=... in a kernel command line, or appends it
// (bootc's add_or_modify).
func setCmdlineArg(cmdline, key, value string) string {
	args := strings.Fields(cmdline)
	found := false
	for i, a := range args {
		if k, _, ok := strings.Cut(a, "="); ok && k == key {
			if !found {
				args[i] = key + "=" + value
				found = true
			} else {
				args[i] = ""
			}
		}
	}
	out := args[:0]
	for _, a := range args {
		if a != "" {
			out = append(out, a)
		}
	}
	if !found {
		out = append(out, key+"="+value)
	}
	return strings.Join(out, " ")
}
