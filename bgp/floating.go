package bgp

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Floating IPs (isthmus-external.yang) reach the provider network or the
// data center as plain IPv4 unicast /32s with this host's tunnel source as
// the next hop, sent to every neighbor with the IPV4_UNICAST family (the
// forwarder translates packets to the floating address arriving on the
// underlay to the pod, 1:1), or, with floating-advertise VPNV4, as VPNv4
// routes of an external VRF carrying its per-VRF label (the forwarder
// translates packets arriving with that label to the pod). A host advertises a floating IP only while
// its pod is attached here, so moving the binding to a pod of another
// host withdraws it here and advertises it there, each host in one
// UPDATE.

// floatingRoutes sets, for every VRF of in, the floating IPs whose pod is
// a pod interface of this host in the VRF (vrfSpec.floating).
func floatingRoutes(in *intent, d *gen.Device) {
	local := localPods(d)
	for name, v := range in.vrfs {
		v.floating, v.floatingExt = vrfFloating(nos.NetworkInstances(d)[name], local[name])
		in.vrfs[name] = v
	}
}

// vrfFloating returns the floating IPs of ni whose pod is one of this
// host's pods (local), sorted, and the external VRF they are advertised
// in ("" for IPv4 unicast).
func vrfFloating(ni *niT, local map[netip.Addr]bool) ([]netip.Prefix, string) {
	var out []netip.Prefix
	for key, f := range nos.FloatingIPs(ni) {
		a, err1 := netip.ParseAddr(key)
		pod, err2 := netip.ParseAddr(f.GetConfig().GetPodAddress())
		if err1 == nil && err2 == nil && a.Is4() && local[pod] {
			out = append(out, netip.PrefixFrom(a, 32))
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out, nos.FloatingVPN(ni)
}

// floatingExports adds the floating IPs of v to out: IPv4 unicast routes
// with the tunnel source as next hop, or, when v advertises them in an
// external VRF, VPNv4 routes of that VRF (its RD, export route targets,
// encapsulation and per-VRF label: the forwarder translates a floating IP
// arriving with that label to its pod, bpf/nat.h). An external VRF that
// exports nothing (no RD or route targets, which validation refuses)
// advertises none.
func floatingExports(out map[exportKey]exportRoute, in *intent, v vrfSpec, label labelFunc) error {
	if v.floatingExt == "" {
		for _, p := range v.floating {
			out[exportKey{v.name, p}] = exportRoute{prefix: p, nexthop: in.endpoint, unicast: true}
		}
		return nil
	}
	ext, ok := in.vrfs[v.floatingExt]
	if !ok || ext.rd == 0 || len(ext.exportRTs) == 0 || len(v.floating) == 0 {
		return nil
	}
	lbl, err := label(ext.name, labelPerVRF, netip.Prefix{})
	if err != nil {
		return fmt.Errorf("label for floating ips of vrf %q in vrf %q: %w", v.name, ext.name, err)
	}
	for _, p := range v.floating {
		out[exportKey{ext.name, p}] = exportRoute{rd: ext.rd, prefix: p, label: lbl, rts: ext.exportRTs, encap: ext.encap, nexthop: in.endpoint}
	}
	return nil
}

// unicastPath is the GoBGP path of an IPv4 unicast route: the prefix, IGP
// origin and the next hop.
func (r exportRoute) unicastPath(withdraw bool) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r.prefix)
	if err != nil {
		return nil, err
	}
	nh, err := bgp.NewPathAttributeNextHop(r.nexthop)
	if err != nil {
		return nil, err
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), nh}
	return &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}, nil
}
