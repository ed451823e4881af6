package dataplane

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// applyPolicy programs the ACL policy of intended, which differs from
// the running configuration by d (nil: not known). r.mu is held.
func (r *Reconciler) applyPolicy(intended *gen.Device, d *nos.Delta) error {
	p, err := r.pcache.compile(intended, d, false)
	if err != nil {
		return err
	}
	r.policy = p
	return r.programPolicy()
}

// programPolicy programs r.policy for the pod interfaces that are
// attached; the others get theirs when they are (converge calls this
// again). r.mu is held.
func (r *Reconciler) programPolicy() error {
	if r.dp == nil {
		return nil
	}
	cfg := PolicyConfig{Interfaces: map[int]InterfacePolicy{}, Tunnel: r.policy.Tunnel}
	for name, ip := range r.policy.Interfaces {
		if i, ok := r.ifindex[name]; ok {
			cfg.Interfaces[i] = ip
		}
	}
	if err := r.dp.SetPolicy(cfg); err != nil {
		return err
	}
	return r.dp.PrunePolicy()
}

// publishPolicy writes the policy counters as state: every ACL entry's
// matched packets and bytes, every pod interface's refused packets.
func (r *Reconciler) publishPolicy() error {
	r.mu.Lock()
	core, dp := r.core, r.dp
	ifaces := map[string]int{}
	for name := range r.policy.Interfaces {
		if i, ok := r.ifindex[name]; ok {
			ifaces[name] = i
		}
	}
	r.mu.Unlock()
	if core == nil || dp == nil {
		return nil
	}
	var errs []error
	update := func(path string, st ygot.GoStruct) {
		if err := core.UpdateState(path, st); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	counters, err := dp.PolicyEntryCounters()
	if err != nil {
		return err
	}
	for entry, c := range counters {
		i := strings.LastIndexByte(entry, '/') // set names may hold slashes
		if i < 0 {
			continue
		}
		set, seq := entry[:i], entry[i+1:]
		n, err := strconv.ParseUint(seq, 10, 32)
		if err != nil {
			continue
		}
		update(fmt.Sprintf("/acl/acl-sets/acl-set[name=%s]/acl-entries/acl-entry[sequence-id=%d]/state", set, n),
			&gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_State{
				MatchedPackets: ygot.Uint64(c.Packets), MatchedOctets: ygot.Uint64(c.Bytes),
			})
	}
	for name, i := range ifaces {
		d, err := dp.InterfacePolicyDenied(i)
		if errors.Is(err, ErrNotAttached) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		node, err := dp.InterfaceNodePassed(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		update(fmt.Sprintf("/interfaces/interface[name=%s]/acl/state", name),
			&gen.IsthmusInterfaces_Interfaces_Interface_Acl_State{
				IngressDeniedPackets: ygot.Uint64(d.Ingress), EgressDeniedPackets: ygot.Uint64(d.Egress),
				EgressNodePackets: ygot.Uint64(node),
			})
	}
	return errors.Join(errs...)
}
