package bgp

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Service addresses reach the data center as VPNv4 /32s: every host with
// a serving backend of a service among its own pods advertises the
// service's address with the VRF's route targets and the VRF's per-VRF
// label (in either label mode). A packet that arrives with that label is
// looked up in the VRF, where the forwarder translates it to one of the
// host's local backends. When the host's last serving backend goes, the
// route is withdrawn, and remote senders ECMP over the hosts left. A
// service whose external-traffic-scope is ALL is advertised while any of
// its backends, on this host or another, takes new flows: the forwarder
// carries a packet for a backend of another host on to that host.

// serviceRoutes sets, for every VRF of in, the service addresses this
// host advertises (vrfSpec.services): those with at least one backend that
// takes new flows and is a pod of this host in the VRF, or, with the ALL
// external-traffic scope, any backend that takes new flows. A backend takes
// new flows when it is ready or, while no backend of the service is ready,
// when it is serving and terminating (as the forwarder chooses).
func serviceRoutes(in *intent, d *gen.Device) error {
	local := localPods(d)
	for name, v := range in.vrfs {
		svcs, err := vrfServices(name, nos.NetworkInstances(d)[name], local[name])
		if err != nil {
			return err
		}
		v.services = svcs
		in.vrfs[name] = v
	}
	return nil
}

// vrfServices returns the service addresses VRF name (ni) advertises,
// sorted, given the addresses of this host's pods in it.
func vrfServices(name string, ni *niT, local map[netip.Addr]bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for svcName, svc := range nos.Services(ni) {
		vip, err := netip.ParseAddr(svc.GetConfig().GetAddress())
		if err != nil || !vip.Is4() {
			return nil, invalid(fmt.Sprintf("%s/services/service[name=%s]/config/address", niPath(name), svcName), "not an IPv4 address: %q", svc.GetConfig().GetAddress())
		}
		all := svc.GetConfig().GetExternalTrafficScope() == gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_ALL
		if servesLocally(svc, local, all) {
			out = append(out, netip.PrefixFrom(vip, 32))
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), nil
}

// servesLocally reports whether a backend that takes new flows is one of
// the local addresses, or, with anywhere, whether any backend does.
func servesLocally(svc *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service, local map[netip.Addr]bool, anywhere bool) bool {
	anyReady, localReady, localFallback := false, false, false
	for k, b := range nos.Backends(svc) {
		c := b.GetConfig()
		a, err := netip.ParseAddr(k.Address)
		isLocal := anywhere || (err == nil && local[a])
		switch {
		case c.GetReady():
			anyReady = true
			localReady = localReady || isLocal
		case c.GetServing() && c.GetTerminating():
			localFallback = localFallback || isLocal
		}
	}
	return localReady || (!anyReady && localFallback)
}

// localPods returns, per VRF, the addresses of the enabled pod interfaces
// attached to this host (those whose services and floating IPs it
// advertises).
func localPods(d *gen.Device) map[string]map[netip.Addr]bool {
	local := map[string]map[netip.Addr]bool{}
	for _, ifc := range nos.Interfaces(d) {
		vrf, a, ok := localPod(ifc)
		if !ok {
			continue
		}
		if local[vrf] == nil {
			local[vrf] = map[netip.Addr]bool{}
		}
		local[vrf][a] = true
	}
	return local
}

// localPod returns the VRF and address of an enabled pod interface with
// an address (ok false for any other interface).
func localPod(ifc *gen.IsthmusInterfaces_Interfaces_Interface) (vrf string, a netip.Addr, ok bool) {
	c := ifc.GetConfig()
	if c.GetType() != gen.IsthmusTypes_InterfaceType_POD || c.GetIpv4Address() == "" || (c.Enabled != nil && !*c.Enabled) {
		return "", netip.Addr{}, false
	}
	p, err := netip.ParsePrefix(c.GetIpv4Address())
	if err != nil {
		return "", netip.Addr{}, false // the pod routes report it
	}
	return c.GetNetworkInstance(), p.Addr(), true
}
