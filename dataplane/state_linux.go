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
)

// publishLoop publishes counters as state every StateInterval until ctx is
// done.
func (r *Reconciler) publishLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.StateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.PublishState(); err != nil {
			r.log.Warn("publish dataplane state", "err", err)
		}
	}
}

// PublishState writes the forwarder's counters into the state tree: per
// pod interface, per VRF (drops by reason, labels, route counts) and per
// tunnel endpoint.
func (r *Reconciler) PublishState() error {
	r.mu.Lock()
	if r.core == nil || r.dp == nil {
		r.mu.Unlock()
		return nil
	}
	core, dp := r.core, r.dp
	ifaces := make(map[string]int, len(r.ifindex))
	for n, i := range r.ifindex {
		ifaces[n] = i
	}
	ifLabel := map[string]uint32{}
	vrfLabels := map[string][]uint32{}
	for lt, l := range r.labels {
		vrfLabels[lt.VRF] = append(vrfLabels[lt.VRF], l)
		if lt.Interface != "" {
			ifLabel[lt.Interface] = l
		}
	}
	for _, l := range vrfLabels {
		slices.Sort(l)
	}
	local, remote := map[string]uint32{}, map[string]uint32{}
	for k := range r.local {
		local[k.VRF]++
	}
	for k := range r.remote {
		remote[k.VRF]++
	}
	vrfs := make([]string, 0, len(r.applied.VRFs))
	for n := range r.applied.VRFs {
		vrfs = append(vrfs, n)
	}
	endpoints := make([]netip.Addr, 0, len(r.epReady))
	for ep := range r.epReady {
		endpoints = append(endpoints, ep)
	}
	r.mu.Unlock()

	var errs []error
	for name, i := range ifaces {
		c, err := dp.InterfaceCounters(i)
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
			},
		}
		if l, ok := ifLabel[name]; ok {
			st.Label = ygot.Uint32(l)
		}
		errs = append(errs, core.UpdateState(fmt.Sprintf("/interfaces/interface[name=%s]/state", name), st))
	}
	for _, name := range vrfs {
		d, err := dp.Drops(name)
		if errors.Is(err, ErrUnknownVRF) {
			continue // nothing programmed in it yet
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
			Forwarding: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Forwarding{
				LocalRoutes: ygot.Uint32(local[name]), RemoteRoutes: ygot.Uint32(remote[name]),
				Labels: vrfLabels[name],
			},
			Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{
				NoRoute: ygot.Uint64(d.NoRoute), TtlExpired: ygot.Uint64(d.TTL),
				UnknownLabel: ygot.Uint64(d.UnknownLabel), UnknownEndpoint: ygot.Uint64(d.UnknownEndpoint),
				Malformed: ygot.Uint64(d.Malformed + d.NoNeighbor + d.Error), MtuExceeded: ygot.Uint64(d.MTU),
			},
		}
		errs = append(errs, core.UpdateState(fmt.Sprintf("/network-instances/network-instance[name=%s]/state", name), st))
	}
	for _, ep := range endpoints {
		c, err := dp.EndpointCounters(ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st := &gen.IsthmusTunnel_Tunnel_Endpoints_Endpoint_State{
			Address: ygot.String(ep.String()),
			InPkts:  ygot.Uint64(c.RxPackets), InOctets: ygot.Uint64(c.RxBytes),
			OutPkts: ygot.Uint64(c.TxPackets), OutOctets: ygot.Uint64(c.TxBytes),
		}
		errs = append(errs, core.UpdateState(fmt.Sprintf("/tunnel/endpoints/endpoint[address=%s]/state", ep), st))
	}
	return errors.Join(errs...)
}
