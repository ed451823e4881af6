package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// rrGuard is the first reconciler of a route reflector. It acts on
// nothing; it refuses every commit that holds configuration only a
// dataplane acts on (interfaces, the tunnel, VRFs, static routes, address
// pools, ACLs), so a route reflector never accepts configuration that
// nothing would carry out. What it allows is BGP in the default instance.
type rrGuard struct{}

// ID names the guard in errors.
func (rrGuard) ID() string { return "role" }

// Start does nothing: the guard keeps no state.
func (rrGuard) Start(context.Context, *nos.Core) error { return nil }

// Apply does nothing: Validate has refused what the role cannot run.
func (rrGuard) Apply(context.Context, *gen.Device, *gen.Device) error { return nil }

// Stop does nothing.
func (rrGuard) Stop(context.Context) error { return nil }

// Validate refuses dataplane configuration, naming the first offending path.
func (rrGuard) Validate(d *gen.Device) error {
	refuse := func(path, what string) error {
		return &nos.PathError{Path: path, Err: fmt.Errorf("%w: role rr runs no dataplane: %s not allowed on a route reflector", nos.ErrInvalid, what)}
	}
	if d == nil {
		return nil
	}
	if d.Interfaces != nil && len(d.Interfaces.Interface) > 0 {
		return refuse("/interfaces/interface[name="+firstKey(d.Interfaces.Interface)+"]", "interfaces are")
	}
	if t := d.Tunnel; t != nil && ((t.Config != nil && *t.Config != gen.IsthmusTunnel_Tunnel_Config{}) ||
		(t.Neighbors != nil && len(t.Neighbors.Neighbor) > 0)) {
		return refuse("/tunnel", "tunnel settings are")
	}
	if d.Acl != nil && d.Acl.AclSets != nil && len(d.Acl.AclSets.AclSet) > 0 {
		return refuse("/acl", "ACLs are")
	}
	if d.NetworkInstances == nil {
		return nil
	}
	nis := d.NetworkInstances.NetworkInstance
	for _, name := range sortedKeys(nis) {
		ni := nis[name]
		path := "/network-instances/network-instance[name=" + name + "]"
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_DEFAULT {
			return refuse(path, "VRFs are")
		}
		if ni.StaticRoutes != nil && len(ni.StaticRoutes.Static) > 0 {
			return refuse(path+"/static-routes", "static routes are")
		}
		if ni.AddressPools != nil && len(ni.AddressPools.AddressPool) > 0 {
			return refuse(path+"/address-pools", "address pools are")
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func firstKey[V any](m map[string]V) string { return sortedKeys(m)[0] }
