package nos

import (
	"context"

	"github.com/isthmus-net/isthmus/gen"
)

// DeltaReconciler is a Reconciler that can validate and apply a commit
// from the entries it changes, so that a commit touching one VRF costs one
// VRF however many are configured. The core calls ValidateDelta and
// ApplyDelta instead of Validate and Apply whenever it knows what a commit
// changed (every Set, Commit and CommitEntries, and the undo of a failed
// one); it calls Apply, with the whole configuration, when the reconciler
// starts. Untouched entries are the very same objects in old and
// intended (the core never changes an entry in place).
type DeltaReconciler interface {
	Reconciler
	// ValidateDelta is Validate for a candidate that differs from the
	// running configuration by d.
	ValidateDelta(intended *gen.Device, d Delta) error
	// ApplyDelta is Apply for old → intended, which differ by d.
	ApplyDelta(ctx context.Context, old, intended *gen.Device, d Delta) error
}

// Delta names what a commit changes, at the grain of top-level list
// entries (a VRF, an interface, an ACL set, an address group, a tag key,
// a CNI namespace) and the tunnel container. Entries it does not name are
// equal, and shared, in both configurations.
type Delta struct {
	d *delta
}

// NetworkInstances returns the names of the network instances the commit
// adds or changes and of those it removes, each sorted.
func (d Delta) NetworkInstances() (changed, removed []string) {
	return d.list(listNI)
}

// Interfaces returns the names of the interfaces the commit adds or
// changes and of those it removes, each sorted.
func (d Delta) Interfaces() (changed, removed []string) {
	return d.list(listIf)
}

// Tunnel reports whether the tunnel container changed.
func (d Delta) Tunnel() bool { return d.d != nil && d.d.tunnel }

// Others reports whether any entry other than network instances and
// interfaces changed: an ACL set, an address group, a tag key or a CNI
// namespace.
func (d Delta) Others() bool {
	if d.d == nil {
		return false
	}
	for i := range topLists {
		if i != listNI && i != listIf && (len(d.d.changed[i]) > 0 || len(d.d.removed[i]) > 0) {
			return true
		}
	}
	return false
}

func (d Delta) list(i int) (changed, removed []string) {
	if d.d == nil {
		return nil, nil
	}
	return d.d.changed[i], d.d.removed[i]
}

// validateRec runs r's validation of cand, which differs from the running
// configuration by ch.
func validateRec(r Reconciler, cand *gen.Device, ch *delta) error {
	if dr, ok := r.(DeltaReconciler); ok && ch != nil {
		return dr.ValidateDelta(cand, Delta{ch})
	}
	return r.Validate(cand)
}

// applyRec runs r's Apply of old → cand, which differ by ch (nil: not
// known, as when the reconcilers start).
func applyRec(ctx context.Context, r Reconciler, old, cand *gen.Device, ch *delta) error {
	if dr, ok := r.(DeltaReconciler); ok && ch != nil {
		return dr.ApplyDelta(ctx, old, cand, Delta{ch})
	}
	return r.Apply(ctx, old, cand)
}
