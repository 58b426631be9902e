package installconfig

import (
	"maps"
	"slices"

	"github.com/cfs-project/cfs/lib/canonjson"
)

// PrintKeys are the keys of bootc's InstallConfiguration, every one
// printed (null when unset) except kargs and karg-deletes, left out when
// no fragment sets them.
var PrintKeys = []string{"root-fs-type", "block", "filesystem", "kargs", "karg-deletes", "match-architectures",
	"ostree", "stateroot", "root-mount-spec", "boot-mount-spec", "bootupd", "bootloader",
	"discoverable-partitions", "enforce-container-sigpolicy", "storage"}

// tables are the [install] subtables bootc merges field by field (a
// table given first is taken whole); filesystem's root is one level down.
var tables = map[string]bool{"filesystem": true, "ostree": true, "bootupd": true, "storage": true}

// checkOther validates the keys cfs does not act on but prints, as bootc's
// types would: a wrong type or value is an error naming the file.
func checkOther(path string, install map[string]any) error {
	enum := func(key string, v any, allowed ...string) error {
		s, ok := v.(string)
		if !ok {
			return errorf(path, "install.%s: must be a string, not %s", key, tomlType(v))
		}
		if !slices.Contains(allowed, s) {
			return errorf(path, "install.%s: %q is not one of %v", key, s, allowed)
		}
		return nil
	}
	table := func(key string, v any, fields map[string]func(string, any) error) error {
		t, ok := v.(map[string]any)
		if !ok {
			return errorf(path, "install.%s: must be a table, not %s", key, tomlType(v))
		}
		for k, fv := range t {
			check, ok := fields[k]
			if !ok {
				return errorf(path, "install.%s.%s: unknown key", key, k)
			}
			if err := check(key+"."+k, fv); err != nil {
				return err
			}
		}
		return nil
	}
	boolean := func(key string, v any) error {
		if _, ok := v.(bool); !ok {
			return errorf(path, "install.%s: must be a boolean, not %s", key, tomlType(v))
		}
		return nil
	}
	fsType := func(key string, v any) error { return enum(key, v, "xfs", "ext4", "btrfs") }
	for key, v := range install {
		var err error
		switch key {
		case "root-fs-type":
			err = fsType(key, v)
		case "block", "match-architectures":
			list, ok := v.([]any)
			if !ok {
				return errorf(path, "install.%s: must be an array of strings, not %s", key, tomlType(v))
			}
			for _, e := range list {
				if key == "block" {
					err = enum(key, e, "direct", "tpm2-luks")
				} else if _, ok := e.(string); !ok {
					err = errorf(path, "install.%s: must be an array of strings, not holding %s", key, tomlType(e))
				}
				if err != nil {
					break
				}
			}
		case "filesystem":
			err = table(key, v, map[string]func(string, any) error{"root": func(k string, v any) error {
				return table(k, v, map[string]func(string, any) error{"type": fsType})
			}})
		case "bootupd":
			err = table(key, v, map[string]func(string, any) error{"skip-boot-uuid": boolean})
		case "discoverable-partitions", "enforce-container-sigpolicy":
			err = boolean(key, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// merge folds one fragment's [install] into the merged document as
// bootc's InstallConfiguration::merge does: scalars and block replaced,
// kargs and karg-deletes appended, tables merged field by field (filesystem
// down to root's type), match-architectures only ever the first
// fragment's.
func merge(dst, src map[string]any) {
	for k, v := range src {
		switch {
		case k == "match-architectures":
			// bootc's merge does not touch it.
		case k == "kargs" || k == "karg-deletes":
			old, _ := dst[k].([]any)
			dst[k] = append(slices.Clone(old), v.([]any)...)
		case tables[k]:
			old, ok := dst[k].(map[string]any)
			if !ok {
				dst[k] = deepClone(v)
				continue
			}
			for fk, fv := range v.(map[string]any) {
				if k == "filesystem" && fk == "root" {
					if oldRoot, ok := old["root"].(map[string]any); ok {
						maps.Copy(oldRoot, fv.(map[string]any))
						continue
					}
				}
				old[fk] = deepClone(fv)
			}
		default:
			dst[k] = v
		}
	}
}

func deepClone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepClone(e)
		}
		return out
	case []any:
		return slices.Clone(x)
	}
	return v
}

// PrintJSON is bootc's "install print-configuration": the merged
// configuration as canonical JSON, every key of bootc's
// InstallConfiguration (null when unset), canonicalized as bootc does
// ([install.filesystem.root] type and root-fs-type made the same, the
// former winning; block defaulting to ["direct"] when any fragment has an
// [install] table). Without all, kargs and karg-deletes are left out, as
// bootc's filter_to_external does (install to-filesystem applies them).
func (c *Config) PrintJSON(all bool) ([]byte, error) {
	doc := map[string]any{}
	for _, k := range PrintKeys {
		doc[k] = nil
	}
	delete(doc, "kargs")
	delete(doc, "karg-deletes")
	m := deepClone(c.merged).(map[string]any)
	maps.Copy(doc, m)
	if c.merged != nil {
		root, _ := nested(doc, "filesystem", "root")
		if t, ok := root["type"]; ok && t != nil {
			doc["root-fs-type"] = t
		} else if t := doc["root-fs-type"]; t != nil {
			fs, _ := doc["filesystem"].(map[string]any)
			if fs == nil {
				fs = map[string]any{}
				doc["filesystem"] = fs
			}
			if root == nil {
				root = map[string]any{}
				fs["root"] = root
			}
			root["type"] = t
		}
		if doc["block"] == nil {
			doc["block"] = []any{"direct"}
		}
	}
	// Fields of tables present but unset print as null too, as serde
	// writes an Option field.
	if fs, ok := doc["filesystem"].(map[string]any); ok {
		if _, ok := fs["root"]; !ok {
			fs["root"] = nil
		} else if root, ok := fs["root"].(map[string]any); ok {
			if _, ok := root["type"]; !ok {
				root["type"] = nil
			}
		}
	}
	if b, ok := doc["bootupd"].(map[string]any); ok {
		if _, ok := b["skip-boot-uuid"]; !ok {
			b["skip-boot-uuid"] = nil
		}
	}
	if s, ok := doc["storage"].(map[string]any); ok {
		if _, ok := s["unified"]; !ok {
			s["unified"] = nil
		}
	}
	if !all {
		delete(doc, "kargs")
		delete(doc, "karg-deletes")
	}
	return canonjson.Marshal(doc)
}

func nested(doc map[string]any, keys ...string) (map[string]any, bool) {
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}
