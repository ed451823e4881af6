package dataplane

import (
	"net/netip"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// External is a VRF's external connectivity as the forwarder applies it
// (bpf/nat.h): what a pod's packet to a destination without a VRF route
// becomes.
type External struct {
	VRF string
	// SNAT: a destination the host forwards to is reached with the source
	// translated to Addr and a port of PortMin..PortMax.
	SNAT bool
	// HostAccess: the node's own addresses go to its stack, and the pods
	// of the VRF get a host route through their veth.
	HostAccess bool
	// Addr is the source of translated packets (an address of the host).
	Addr netip.Addr
	// PortMin and PortMax are the VRF's ports (ICMP identifiers); ranges
	// of two VRFs must not overlap.
	PortMin, PortMax uint16
}

// Floating is a floating IP bound 1:1 to a pod of a VRF.
type Floating struct {
	VRF  string
	Addr netip.Addr // the floating address
	Pod  netip.Addr // the pod's address in the VRF
	// Ext is the external VRF the floating IP is advertised in as VPNv4
	// (floating-advertise VPNV4), "" for IPv4 unicast: packets to it
	// arrive with that VRF's label, and the pod's packets to destinations
	// that VRF routes leave from the floating IP through it.
	Ext string
}

// floatingsOf is every floating IP binding of d.
func floatingsOf(d *gen.Device) []Floating {
	var out []Floating
	for name, ni := range nos.NetworkInstances(d) {
		ext := nos.FloatingVPN(ni)
		for key, f := range nos.FloatingIPs(ni) {
			a, err1 := netip.ParseAddr(key)
			p, err2 := netip.ParseAddr(f.GetConfig().GetPodAddress())
			if err1 == nil && err2 == nil {
				out = append(out, Floating{VRF: name, Addr: a, Pod: p, Ext: ext})
			}
		}
	}
	return out
}

// ExternalCounters are a VRF's external traffic counters, summed over
// CPUs.
type ExternalCounters struct {
	Translations  uint64 // packets translated, both directions
	Flows         uint64 // translated flows created
	PortExhausted uint64 // first packets without a free port
	Dropped       uint64 // packets without a route dropped by the external step
	Host          uint64 // packets passed to the node's stack
}

// externalsOf is the external connectivity of every L3VRF of d that has
// SNAT or host access, by VRF name.
func externalsOf(d *gen.Device) map[string]External {
	out := map[string]External{}
	for name, ni := range nos.NetworkInstances(d) {
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			continue
		}
		s := nos.External(d, ni)
		if !s.SNAT && !s.HostAccess {
			continue
		}
		e := External{VRF: name, SNAT: s.SNAT, HostAccess: s.HostAccess}
		if s.SNAT {
			e.Addr, e.PortMin, e.PortMax = s.Address, s.PortMin, s.PortMax
		}
		out[name] = e
	}
	return out
}
