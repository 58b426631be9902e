package install

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/atomicfile"
	"github.com/cfs-project/cfs/lib/bootcconv"
	"github.com/cfs-project/cfs/lib/canonjson"
	"github.com/cfs-project/cfs/lib/fstree"
)

// AlephFile is bootc's install provenance, written at the top of the
// physical root of ostree hosts only (composefs-native installs write
// none, as bootc's do).
const AlephFile = ".bootc-aleph.json"

// Aleph is what bootc's InstallAleph records, with its kebab-case keys.
// bootc leaves image out for a source under /tmp (a throwaway local
// copy), labels out when there are none, and writes version and
// timestamp as null when the image says nothing.
type Aleph struct {
	Image       *string           `json:"image,omitempty"`
	Digest      string            `json:"digest"`
	TargetImage string            `json:"target-image"`
	Labels      map[string]string `json:"labels,omitempty"`
	Version     *string           `json:"version"`
	Timestamp   *string           `json:"timestamp"`
	Kernel      string            `json:"kernel"`
	SELinux     string            `json:"selinux"`
}

// imageName is the name part of an image reference as bootc's
// ImageReference holds it: docker://quay.io/x:1 → quay.io/x:1,
// oci:/dir:tag → /dir:tag.
func imageName(ref string) string {
	r, err := bootcconv.ParseImageReference(OriginReference(ref))
	if err != nil {
		return ref
	}
	return r.Image
}

// newAleph fills the record as bootc does: version from the
// org.opencontainers.image.version label (else "version"), timestamp from
// org.opencontainers.image.created when it is RFC 3339, the kernel that
// runs the install, and the SELinux state of the install.
func newAleph(source, target, manifestDigest string, config []byte, tree *fstree.Dir, hostSELinux bool) (*Aleph, error) {
	var cfg struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	a := &Aleph{Digest: manifestDigest, TargetImage: imageName(target), Labels: cfg.Config.Labels}
	if name := imageName(source); !strings.HasPrefix(name, "/tmp") {
		a.Image = &name
	}
	for _, k := range []string{"org.opencontainers.image.version", "version"} {
		if v, ok := a.Labels[k]; ok {
			a.Version = &v
			break
		}
	}
	if v, ok := a.Labels["org.opencontainers.image.created"]; ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			s := rfc3339AutoSi(t)
			a.Timestamp = &s
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, err
	}
	a.Kernel = unix.ByteSliceToString(u.Release[:])
	a.SELinux = selinuxState(imageHasSELinux(tree), hostSELinux)
	return a, nil
}

// rfc3339AutoSi formats t in UTC as chrono serializes a DateTime<Utc>:
// "Z" for the offset, and the fraction of a second in 0, 3, 6 or 9
// digits, as few as hold it.
func rfc3339AutoSi(t time.Time) string {
	t = t.UTC()
	ns := t.Nanosecond()
	frac := ""
	switch {
	case ns == 0:
	case ns%1_000_000 == 0:
		frac = fmt.Sprintf(".%03d", ns/1_000_000)
	case ns%1_000 == 0:
		frac = fmt.Sprintf(".%06d", ns/1_000)
	default:
		frac = fmt.Sprintf(".%09d", ns)
	}
	return t.Format("2006-01-02T15:04:05") + frac + "Z"
}

// imageHasSELinux is bootc's test of the source: a policy configured in
// the image (/etc/selinux/config), or its root labelled.
func imageHasSELinux(tree *fstree.Dir) bool {
	if tree == nil {
		return false
	}
	if _, ok := tree.Xattrs["security.selinux"]; ok {
		return true
	}
	t := &imageTree{root: tree}
	return t.resolve("/etc/selinux/config") != nil
}

// hostSELinuxEnabled is bootc's selinux_enabled: the installing host runs
// SELinux when its selinuxfs is there.
func hostSELinuxEnabled() bool {
	_, err := os.Stat("/proc/1/root/sys/fs/selinux/enforce")
	return err == nil
}

// selinuxState is bootc's SELinuxFinalState as the aleph spells it.
func selinuxState(image, host bool) string {
	switch {
	case !image:
		return "disabled"
	case host:
		return "enabled"
	}
	return "host-disabled"
}

// canonicalJSON is the aleph as bootc's canon_json (RFC 8785) writes it:
// keys sorted by UTF-16 code units, compact, null for what is absent.
func (a *Aleph) canonicalJSON() []byte {
	doc := map[string]any{"digest": a.Digest, "target-image": a.TargetImage,
		"kernel": a.Kernel, "selinux": a.SELinux, "version": nil, "timestamp": nil}
	if a.Image != nil {
		doc["image"] = *a.Image
	}
	if a.Version != nil {
		doc["version"] = *a.Version
	}
	if a.Timestamp != nil {
		doc["timestamp"] = *a.Timestamp
	}
	if len(a.Labels) > 0 {
		doc["labels"] = a.Labels
	}
	out, err := canonjson.Marshal(doc)
	if err != nil {
		panic(err) // only strings and string maps above
	}
	return out
}

// writeAleph writes ROOT/.bootc-aleph.json atomically (bootc's
// atomic_replace_with), without a trailing newline as canon_json writes it.
func writeAleph(root string, a *Aleph) error {
	return atomicfile.WriteFile("", filepath.Join(root, AlephFile), a.canonicalJSON(), 0o644)
}
