package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// NamespaceState is the reconciler behind /cni/namespaces/namespace/state:
// it reports each namespace mapping as committed, which is the mapping the
// daemon's next ADD for that namespace uses. The core removes the state of
// a mapping with its configuration. It also reports every newly
// configured address pool's allocated count, so a pool has state before
// its first ADD.
type NamespaceState struct {
	core *nos.Core
}

var _ nos.Reconciler = (*NamespaceState)(nil)

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

// Apply writes the state of every mapping that is new or changed.
func (r *NamespaceState) Apply(ctx context.Context, old, intended *gen.Device) error {
	var errs []error
	var nss map[string]*gen.IsthmusCni_Cni_Namespaces_Namespace
	if n := intended.GetCni().GetNamespaces(); n != nil {
		nss = n.Namespace
	}
	for name, ns := range nss {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if reflect.DeepEqual(old.GetCni().GetNamespaces().GetNamespace(name), ns) {
			continue
		}
		st := &gen.IsthmusCni_Cni_Namespaces_Namespace_State{
			Name:            ygot.String(name),
			NetworkInstance: ygot.String(ns.GetConfig().GetNetworkInstance()),
		}
		path := fmt.Sprintf("/cni/namespaces/namespace[name=%s]/state", name)
		if err := r.core.UpdateState(path, st); err != nil {
			errs = append(errs, fmt.Errorf("write state of namespace %s: %w", name, err))
		}
	}
	// A pool appears in state as soon as it is configured, with what the
	// IPAM has handed out of it (none, for a new pool).
	for name, ni := range nos.NetworkInstances(intended) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if reflect.DeepEqual(nos.NetworkInstances(old)[name].GetAddressPools(), ni.GetAddressPools()) {
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
