package dataplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// policyFlowsPerRequest caps the policy flows of one network instance a
// Get reads on request.
const policyFlowsPerRequest = 65536

// Where a policy flow entry was refused: the first counter slot of a
// refused flow is kind << pointShift | index (POINT_* of bpf/policy.h).
const (
	pointEgress  = 1 // index: interface slot
	pointIngress = 2 // index: interface slot
	pointTunnel  = 3 // index: VRF
	pointShift   = 14
)

// decisionNames turns the counter slots a policy flow entry holds back
// into names: ACL entries and pod interfaces.
type decisionNames struct {
	entries map[uint32]string // counter slot → "set/sequence"
	ifindex map[uint32]int    // interface slot → ifindex
}

// decisionNames snapshots the names. d.mu is held.
func (d *Dataplane) decisionNames() decisionNames {
	n := decisionNames{entries: map[uint32]string{}, ifindex: map[uint32]int{}}
	if d.pol != nil {
		for e, s := range d.pol.entries {
			n.entries[s] = e
		}
	}
	for i, s := range d.ifSlots {
		n.ifindex[s] = i
	}
	return n
}

// decode fills in p what flow entry f says decided it (flow.service of a
// policy entry: two 16-bit counter slots, pol_store in bpf/policy.h) and
// its idle time at now (bpf_ktime_get_ns).
func (n decisionNames) decode(p *PolicyFlow, f forwarderFlow, now uint64) {
	if now > f.Seen {
		p.Idle = time.Duration(now - f.Seen)
	}
	first, second := f.Service&0xffff, f.Service>>16
	if p.Verdict == "ALLOW" {
		for _, s := range []uint32{first, second} {
			if e, ok := n.entries[s]; ok && s != 0 {
				p.DecidedBy = append(p.DecidedBy, e)
			}
		}
		return
	}
	if e, ok := n.entries[second]; ok && second != 0 {
		p.DecidedBy = []string{e}
	}
	index := first & (1<<pointShift - 1)
	switch first >> pointShift {
	case pointEgress:
		p.DeniedAt, p.DeniedIfindex = "EGRESS", n.ifindex[index]
	case pointIngress:
		p.DeniedAt, p.DeniedIfindex = "INGRESS", n.ifindex[index]
	case pointTunnel:
		p.DeniedAt = "TUNNEL_INGRESS"
	}
}

// refreshPolicyFlows is the refresher of network-instance/state/acl-flows
// (registered with nos.Core.RefreshOnRequest): for a Get that reaches
// that container or a path inside it, it writes the policy flows of the
// network instances the path names (or every one, for a wildcard), read
// from the pinned flow table now, replacing what an earlier Get left. A
// Get that stops above the container reads no flows.
func (r *Reconciler) refreshPolicyFlows(ctx context.Context, path *gpb.Path) error {
	elems := path.GetElem()
	if len(elems) < 4 {
		return nil
	}
	r.mu.Lock()
	core, dp := r.core, r.dp
	ifnames := map[int]string{}
	for name, i := range r.ifindex {
		ifnames[i] = name
	}
	r.mu.Unlock()
	if core == nil || dp == nil {
		return nil
	}
	want, ok := elems[1].GetKey()["name"]
	var vrfs []string
	if err := core.Read(func(config, _ *gen.Device) error {
		for name := range nos.NetworkInstances(config) {
			if !ok || want == "*" || want == name {
				vrfs = append(vrfs, name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if len(vrfs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	flows, err := dp.PolicyFlows()
	if err != nil {
		return err
	}
	byVRF := map[string][]PolicyFlow{}
	for _, f := range flows {
		if len(byVRF[f.VRF]) < policyFlowsPerRequest {
			byVRF[f.VRF] = append(byVRF[f.VRF], f)
		}
	}
	var errs []error
	for _, vrf := range vrfs {
		base := fmt.Sprintf("/network-instances/network-instance[name=%s]/state/acl-flows", vrf)
		if err := core.DeleteState(base); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
			continue
		}
		if len(byVRF[vrf]) == 0 {
			continue
		}
		c, err := aclFlowsState(byVRF[vrf], ifnames)
		if err != nil {
			errs = append(errs, fmt.Errorf("list policy flows of %s: %w", vrf, err))
			continue
		}
		if err := core.UpdateState(base, c); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// aclFlowsState is the acl-flows container of one network instance's
// flows; ifnames names pod interfaces by ifindex.
func aclFlowsState(flows []PolicyFlow, ifnames map[int]string) (*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_AclFlows, error) {
	c := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_AclFlows{}
	for _, f := range flows {
		e, err := c.NewFlow(f.Protocol, f.Source.Addr().String(), f.Source.Port(), f.Dest.Addr().String(), f.Dest.Port())
		if err != nil {
			return nil, err
		}
		switch f.Verdict {
		case "ALLOW":
			e.Verdict = gen.IsthmusAclFlows_Verdict_ALLOW
		case "DENY":
			e.Verdict = gen.IsthmusAclFlows_Verdict_DENY
		case "REJECT":
			e.Verdict = gen.IsthmusAclFlows_Verdict_REJECT
		}
		e.Reply, e.Stale = ygot.Bool(f.Reply), ygot.Bool(f.Stale)
		e.DecidedBy = f.DecidedBy
		e.Idle = ygot.Uint32(uint32(f.Idle / time.Second))
		switch f.DeniedAt {
		case "EGRESS":
			e.DeniedAt = gen.IsthmusAclFlows_AttachmentPoint_EGRESS
		case "INGRESS":
			e.DeniedAt = gen.IsthmusAclFlows_AttachmentPoint_INGRESS
		case "TUNNEL_INGRESS":
			e.DeniedAt = gen.IsthmusAclFlows_AttachmentPoint_TUNNEL_INGRESS
		}
		if name, ok := ifnames[f.DeniedIfindex]; ok && f.DeniedIfindex != 0 {
			e.Interface = ygot.String(name)
		}
	}
	return c, nil
}
