package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// The dataplane reconciler is the only writer of these state subtrees
// (see the YANG descriptions): per pod interface its state; per network
// instance state/forwarding and state/counters (never state/exported nor
// state/imported, which BGP writes); per tunnel endpoint its state;
// tunnel/state/counters with the underlay drops; and per underlay
// interface its state as the kernel counts it (underlay_state_linux.go).
// The applied config leaves under state are the core's (nos/mirror.go).

// publishLoop collects expired flows and publishes counters, services and
// the flow table as state every StateInterval until ctx is done.
func (r *Reconciler) publishLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.StateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.collectAndPublish(); err != nil {
			r.log.Warn("collect flows", "err", err)
		}
		if err := r.PublishState(); err != nil {
			r.log.Warn("publish dataplane state", "err", err)
		}
		if err := r.refreshExternal(); err != nil {
			r.log.Warn("publish external connectivity", "err", err)
		}
		if err := r.publishPolicy(); err != nil {
			r.log.Warn("publish policy state", "err", err)
		}
	}
}

// stateSnapshot is what PublishState writes, copied under r.mu.
type stateSnapshot struct {
	ifaces    map[string]int    // attached pod interface → ifindex
	down      []string          // disabled pod interfaces
	ifLabel   map[string]uint32 // pod interface → its per-prefix label
	vrfLabels map[string][]uint32
	statics   map[RouteKey]uint32 // static route → the label it is advertised with
	local     map[string]uint32
	remote    map[string]uint32
	vrfs      []string
	endpoints []netip.Addr
	tunnel    bool
}

// PublishState writes the forwarder's counters into the state tree: per
// pod interface, per VRF (drops by reason, labels, route counts), per
// tunnel endpoint, and the underlay's drops before any
// VRF is known under tunnel/state/counters. An entry that a commit deleted
// after the snapshot was taken is refused by the core (nos.ErrNoConfig)
// and skipped: its state is not brought back, and that is no error.
func (r *Reconciler) PublishState() error {
	snap, ok := r.snapshot()
	if !ok {
		return nil
	}
	return r.writeState(snap)
}

// forgetTunnel deletes tunnel/state once the tunnel is no longer
// configured (a container, so no commit prunes it).
func (r *Reconciler) forgetTunnel(core *nos.Core) error {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	if !r.tunnelPublished {
		return nil
	}
	if err := core.DeleteState("/tunnel/state"); err != nil {
		return err
	}
	r.tunnelPublished = false
	return nil
}

// forgetEndpoints deletes the state of endpoints published before and no
// longer in use: tunnel/endpoints is a state-only list, so no commit prunes
// it.
func (r *Reconciler) forgetEndpoints(core *nos.Core, now []netip.Addr) error {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	current := make(map[netip.Addr]bool, len(now))
	for _, ep := range now {
		current[ep] = true
	}
	var errs []error
	for ep := range r.published {
		if current[ep] {
			continue
		}
		if err := core.DeleteState(fmt.Sprintf("/tunnel/endpoints/endpoint[address=%s]", ep)); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.published, ep)
	}
	for ep := range current {
		r.published[ep] = true
	}
	return errors.Join(errs...)
}

func (r *Reconciler) snapshot() (stateSnapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.core == nil || r.dp == nil {
		return stateSnapshot{}, false
	}
	s := stateSnapshot{
		ifaces:    make(map[string]int, len(r.ifindex)),
		ifLabel:   map[string]uint32{},
		vrfLabels: map[string][]uint32{},
		statics:   map[RouteKey]uint32{},
		local:     map[string]uint32{},
		remote:    map[string]uint32{},
		tunnel:    r.applied.Tunnel != nil,
	}
	for n, i := range r.ifindex {
		s.ifaces[n] = i
	}
	for n, p := range r.applied.Pods {
		if p.Down {
			s.down = append(s.down, n)
		}
	}
	for lt, l := range r.labels {
		s.vrfLabels[lt.VRF] = append(s.vrfLabels[lt.VRF], l)
		if lt.Interface != "" {
			s.ifLabel[lt.Interface] = l
		}
	}
	for k, ifname := range r.applied.Statics { // its own label per prefix, else the VRF's
		if l, ok := r.labels[labelTarget{VRF: k.VRF, Prefix: k.Prefix, Interface: ifname}]; ok {
			s.statics[k] = l
		} else if l, ok := r.labels[labelTarget{VRF: k.VRF}]; ok {
			s.statics[k] = l
		}
	}
	for _, l := range s.vrfLabels {
		slices.Sort(l)
	}
	for k := range r.local {
		s.local[k.VRF]++
	}
	for k := range r.remote {
		s.remote[k.VRF]++
	}
	for n := range r.applied.VRFs {
		s.vrfs = append(s.vrfs, n)
	}
	slices.Sort(s.vrfs)
	for ep := range r.epReady {
		s.endpoints = append(s.endpoints, ep)
	}
	return s, true
}

// writeState writes a snapshot. Writes the core refuses because the entry
// is no longer configured are skipped.
func (r *Reconciler) writeState(s stateSnapshot) error {
	r.mu.Lock()
	core, dp := r.core, r.dp
	r.mu.Unlock()
	var errs []error
	update := func(path string, st ygot.GoStruct) {
		if err := core.UpdateState(path, st); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	for name, i := range s.ifaces {
		c, err := dp.InterfaceCounters(i)
		if errors.Is(err, ErrNotAttached) {
			continue // detached since the snapshot
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st := &gen.IsthmusInterfaces_Interfaces_Interface_State{
			Ifindex:    ygot.Uint32(uint32(i)),
			OperStatus: gen.IsthmusTypes_OperStatus_UP,
			Counters: &gen.IsthmusInterfaces_Interfaces_Interface_State_Counters{
				InPkts: ygot.Uint64(c.RxPackets), InOctets: ygot.Uint64(c.RxBytes),
				OutPkts: ygot.Uint64(c.TxPackets), OutOctets: ygot.Uint64(c.TxBytes),
				InDrops: ygot.Uint64(c.RxDrops), OutDrops: ygot.Uint64(c.TxDrops),
			},
		}
		if l, ok := s.ifLabel[name]; ok {
			st.Label = ygot.Uint32(l)
		}
		update(fmt.Sprintf("/interfaces/interface[name=%s]/state", name), st)
	}
	for k, l := range s.statics {
		update(fmt.Sprintf("/network-instances/network-instance[name=%s]/static-routes/static[prefix=%s]/state", k.VRF, k.Prefix),
			&gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_StaticRoutes_Static_State{Label: ygot.Uint32(l)})
	}
	for _, name := range s.down { // detached: no counters of its own
		update(fmt.Sprintf("/interfaces/interface[name=%s]/state", name),
			&gen.IsthmusInterfaces_Interfaces_Interface_State{OperStatus: gen.IsthmusTypes_OperStatus_DOWN})
	}
	var underlay DropCounters // drops before a VRF is known, and unknown-endpoint everywhere
	for _, name := range s.vrfs {
		d, err := dp.Drops(name)
		if errors.Is(err, ErrUnknownVRF) {
			continue // nothing programmed in it yet
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		underlay.UnknownEndpoint += d.UnknownEndpoint
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{}
		st.Forwarding = &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Forwarding{
			LocalRoutes: ygot.Uint32(s.local[name]), RemoteRoutes: ygot.Uint32(s.remote[name]),
			Labels: s.vrfLabels[name],
		}
		st.Counters = &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{
			NoRoute: ygot.Uint64(d.NoRoute), TtlExpired: ygot.Uint64(d.TTL),
			UnknownLabel: ygot.Uint64(d.UnknownLabel), UnknownEndpoint: ygot.Uint64(d.UnknownEndpoint),
			Malformed: ygot.Uint64(d.Malformed + d.NoNeighbor + d.Error), MtuExceeded: ygot.Uint64(d.MTU),
		}
		if all, tunnel, err := dp.VRFPolicyDenied(name); err != nil { // policy.h counts its own
			errs = append(errs, err)
		} else {
			st.Counters.AclDenied, st.Counters.TunnelAclDenied = ygot.Uint64(all), ygot.Uint64(tunnel)
		}
		if rj, err := dp.VRFTunnelRejects(name); err != nil { // policy_reject_tunnel.h
			errs = append(errs, err)
		} else {
			st.Counters.TunnelRejectsSent, st.Counters.TunnelRejectsUnsent = ygot.Uint64(rj.Sent), ygot.Uint64(rj.Unsent)
		}
		update(fmt.Sprintf("/network-instances/network-instance[name=%s]/state", name), st)
	}
	for _, ep := range s.endpoints {
		c, err := dp.EndpointCounters(ep)
		if errors.Is(err, ErrUnknownEndpoint) {
			continue // deleted since the snapshot
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st := &gen.IsthmusTunnel_Tunnel_Endpoints_Endpoint_State{
			Address: ygot.String(ep.String()),
			InPkts:  ygot.Uint64(c.RxPackets), InOctets: ygot.Uint64(c.RxBytes),
			OutPkts: ygot.Uint64(c.TxPackets), OutOctets: ygot.Uint64(c.TxBytes),
		}
		update(fmt.Sprintf("/tunnel/endpoints/endpoint[address=%s]/state", ep), st)
	}
	errs = append(errs, r.forgetEndpoints(core, s.endpoints))
	errs = append(errs, r.writeUnderlayState(core, dp))
	if !s.tunnel {
		errs = append(errs, r.forgetTunnel(core))
	} else {
		d, err := dp.Drops("")
		if err != nil {
			errs = append(errs, err)
		} else {
			st := &gen.IsthmusTunnel_Tunnel_State{}
			st.Counters = &gen.IsthmusTunnel_Tunnel_State_Counters{
				UnknownEndpoint: ygot.Uint64(d.UnknownEndpoint + underlay.UnknownEndpoint),
				UnknownLabel:    ygot.Uint64(d.UnknownLabel),
				Malformed:       ygot.Uint64(d.Malformed + d.NoNeighbor + d.Error),
			}
			update("/tunnel/state", st)
			r.pubMu.Lock()
			r.tunnelPublished = true
			r.pubMu.Unlock()
		}
	}
	return errors.Join(errs...)
}
