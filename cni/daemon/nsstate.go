package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// NamespaceState is the CNI daemon's reconciler. The state of a namespace
// mapping (/cni/namespaces/namespace/state) is the mapping as committed,
// which the core mirrors from its configuration; the daemon's next ADD for
// that namespace uses it. The reconciler reports every newly configured
// address pool's allocated count, so a pool has state before its first
// ADD.
type NamespaceState struct {
	core *nos.Core
}

var _ nos.DeltaReconciler = (*NamespaceState)(nil)

// ID names the reconciler.
func (*NamespaceState) ID() string { return "cni" }

// Start keeps core to write state through.
func (r *NamespaceState) Start(_ context.Context, core *nos.Core) error {
	r.core = core
	return nil
}

// Validate accepts everything: the core checks the mappings.
func (*NamespaceState) Validate(*gen.Device) error { return nil }

// Stop does nothing.
func (*NamespaceState) Stop(context.Context) error { return nil }

// Apply writes the allocated count of every pool that is new or changed.
func (r *NamespaceState) Apply(ctx context.Context, old, intended *gen.Device) error {
	var names []string
	for name := range nos.NetworkInstances(intended) {
		names = append(names, name)
	}
	return r.applyPools(ctx, old, intended, names)
}

// ValidateDelta accepts everything, as Validate.
func (*NamespaceState) ValidateDelta(*gen.Device, nos.Delta) error { return nil }

// ApplyDelta is Apply for the network instances the commit changes only.
func (r *NamespaceState) ApplyDelta(ctx context.Context, old, intended *gen.Device, d nos.Delta) error {
	changed, _ := d.NetworkInstances()
	return r.applyPools(ctx, old, intended, changed)
}

// applyPools writes the allocated count of every pool of the network
// instances names that is new or changed.
func (r *NamespaceState) applyPools(ctx context.Context, old, intended *gen.Device, names []string) error {
	var errs []error
	// A pool appears in state as soon as it is configured, with what the
	// IPAM has handed out of it (none, for a new pool).
	for _, name := range names {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ni := nos.NetworkInstances(intended)[name]
		if o := nos.NetworkInstances(old)[name]; ni == nil || o == ni || reflect.DeepEqual(o.GetAddressPools(), ni.GetAddressPools()) {
			continue
		}
		pools, err := vrfPools(intended, name)
		if err != nil {
			continue // no pools
		}
		if err := writePoolState(r.core, r.core.Store().DB(), name, pools); err != nil {
			errs = append(errs, fmt.Errorf("write pool state of %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
