package sysroot

// Binding is bootc's BindingState: how far the host is from unified storage.
type Binding string

const (
	BindingDisabled  Binding = "disabled"
	BindingBoundOnly Binding = "bound-only" // ostree commits come from composefs; no containers-storage
	BindingUnified   Binding = "unified"    // containers-storage participates too
)

// Storage is what the two flags say, combined as bootc combines them.
type Storage struct {
	Unified      Unified // from bootc.json; disabled when absent
	HasBootcJSON bool
	RepoFlag     bool // [composefs] unified=true in the ostree repo config
	Binding      Binding
}

// ReadStorage reads both flags under root.
func ReadStorage(root string) (Storage, error) {
	var s Storage
	var err error
	if s.Unified, s.HasBootcJSON, err = ReadBootcJSON(root); err != nil {
		return s, err
	}
	if s.RepoFlag, _, err = ReadRepoFlag(root); err != nil {
		return s, err
	}
	s.Binding = classify(s.RepoFlag, s.HasBootcJSON && s.Unified.Enabled())
	return s, nil
}

// classify is bootc's classify_binding. bound is ORed with cstorage
// because hosts onboarded by older bootc have bootc.json but no repo key.
func classify(repoFlag, cstorage bool) Binding {
	switch {
	case !repoFlag && !cstorage:
		return BindingDisabled
	case !cstorage:
		return BindingBoundOnly
	}
	return BindingUnified
}

// Bound is what bootc status reports as ostreeComposefsBound: ostree
// commits are synthesized from composefs. Never on composefs-native hosts,
// where there is no ostree to bind.
func (s Storage) Bound(kind Kind) bool {
	return kind == KindOstree && s.Binding != BindingDisabled
}

// Reported says whether bootc status has a storage field at all: on ostree
// hosts when either signal is set, on composefs-native hosts only once
// bootc.json exists.
func (s Storage) Reported(kind Kind) bool {
	if kind == KindComposefs {
		return s.HasBootcJSON
	}
	return s.Unified.Enabled() || s.RepoFlag
}

// StatusLine is the value of the booted slot's "Storage:" row, "" for none.
func (s Storage) StatusLine(kind Kind) string {
	switch {
	case s.Unified.Enabled():
		return "unified (" + string(s.Unified) + ")"
	case s.Bound(kind):
		return "ostree-composefs-bound"
	}
	return ""
}
