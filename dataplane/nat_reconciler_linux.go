package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// externalState is what the reconciler applied of external connectivity.
// It is guarded by the Reconciler's mu.
type externalState struct {
	vrfs     map[string]External // applied, by VRF
	reserved [][2]uint16         // port ranges this process reserved in the kernel
	floating []Floating          // applied floating IP bindings (sorted)
}

// applyExternal programs the external connectivity of intended: the
// forwarder's per-VRF settings, the kernel's reserved ports and the host
// routes of pods in VRFs with host access. r.mu must be held.
func (r *Reconciler) applyExternal(intended *gen.Device) error {
	want := externalsOf(intended)
	if r.external == nil {
		r.external = &externalState{}
	}
	if !maps.Equal(want, r.external.vrfs) {
		list := slices.Collect(maps.Values(want))
		if err := r.dp.SetExternal(list); err != nil {
			return err
		}
		var ranges [][2]uint16
		for _, e := range list {
			if e.SNAT {
				ranges = append(ranges, [2]uint16{e.PortMin, e.PortMax})
			}
		}
		if len(ranges) > 0 || len(r.external.reserved) > 0 {
			if err := ReservePorts(r.external.reserved, ranges); err != nil {
				return fmt.Errorf("apply external connectivity: %w", err)
			}
		}
		r.external.vrfs, r.external.reserved = want, ranges
	}
	fs := floatingsOf(intended)
	slices.SortFunc(fs, func(a, b Floating) int { return a.Addr.Compare(b.Addr) })
	if !slices.Equal(fs, r.external.floating) {
		if err := r.dp.SetFloating(fs); err != nil {
			return err
		}
		r.external.floating = fs
	}
	return r.dp.SetHostRoutes(r.hostRoutes())
}

// hostRoutes are the routes host access needs: each attached pod of a VRF
// with host access, through its veth. r.mu must be held.
func (r *Reconciler) hostRoutes() map[netip.Addr]HostRoute {
	out := map[netip.Addr]HostRoute{}
	if r.external == nil {
		return out
	}
	for ifname, p := range r.attached {
		if !r.external.vrfs[p.VRF].HostAccess || !p.Prefix.IsValid() {
			continue
		}
		if i, ok := r.ifindex[ifname]; ok {
			mac, _ := net.ParseMAC(p.PeerMAC)
			out[p.Prefix.Addr()] = HostRoute{Ifindex: i, MAC: mac}
		}
	}
	return out
}

// refreshExternal brings the host routes up to date with pods the retry
// loop attached since the last commit, and publishes each VRF's external
// state: the settings in force, counters and translated flows.
func (r *Reconciler) refreshExternal() error {
	r.mu.Lock()
	dp, core := r.dp, r.core
	if dp == nil || core == nil || r.external == nil {
		r.mu.Unlock()
		return nil
	}
	err := dp.SetHostRoutes(r.hostRoutes())
	vrfs := maps.Clone(r.external.vrfs)
	floating := slices.Clone(r.external.floating)
	local := map[Floating]bool{}
	for _, f := range floating {
		for _, p := range r.attached {
			if p.VRF == f.VRF && p.Prefix.IsValid() && p.Prefix.Addr() == f.Pod {
				local[f] = true
			}
		}
	}
	r.mu.Unlock()
	errs := []error{err}
	flows, err := dp.ExternalFlows()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	ids := dp.VRFs()
	for name, e := range vrfs {
		c, err := dp.ExternalCounters(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mode := gen.IsthmusExternal_ExternalMode_DROP
		if e.SNAT {
			mode = gen.IsthmusExternal_ExternalMode_SNAT
		}
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_State{
			Mode:        mode,
			HostAccess:  ygot.Bool(e.HostAccess),
			ActiveFlows: ygot.Uint32(uint32(flows[ids[name]])),
			Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_State_Counters{
				Translations: ygot.Uint64(c.Translations), Flows: ygot.Uint64(c.Flows),
				PortExhausted: ygot.Uint64(c.PortExhausted), Dropped: ygot.Uint64(c.Dropped),
				HostPackets: ygot.Uint64(c.Host),
			},
		}
		if e.SNAT {
			st.SnatAddress = ygot.String(e.Addr.String())
			st.PortMin, st.PortMax = ygot.Uint16(e.PortMin), ygot.Uint16(e.PortMax)
		}
		path := fmt.Sprintf("/network-instances/network-instance[name=%s]/external/state", name)
		if err := core.UpdateState(path, st); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	for _, f := range floating {
		path := fmt.Sprintf("/network-instances/network-instance[name=%s]/external/floating-ips/floating-ip[address=%s]/state", f.VRF, f.Addr)
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_FloatingIps_FloatingIp_State{
			Address: ygot.String(f.Addr.String()), PodAddress: ygot.String(f.Pod.String()), Local: ygot.Bool(local[f]),
		}
		if err := core.UpdateState(path, st); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
