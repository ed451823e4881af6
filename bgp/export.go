package bgp

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/nos"
)

// exportKey identifies one exported route.
type exportKey struct {
	vrf    string
	prefix netip.Prefix
}

// exportRoute is one local route as it is advertised: a VPNv4 path.
type exportRoute struct {
	rd      rd
	prefix  netip.Prefix
	label   uint32
	rts     []rt
	encap   nos.Encap
	nexthop netip.Addr
	unicast bool // an IPv4 unicast route (a floating IP, floating.go), not VPNv4
}

func (a exportRoute) equal(b exportRoute) bool {
	return a.rd == b.rd && a.prefix == b.prefix && a.label == b.label && a.encap == b.encap &&
		a.nexthop == b.nexthop && a.unicast == b.unicast && slices.Equal(a.rts, b.rts)
}

// labelFunc returns the label of a prefix of a VRF in a mode. The reconciler
// backs it with the core's persistent allocator; tests with a table.
type labelFunc func(vrf string, mode labelMode, p netip.Prefix) (uint32, error)

// exportRoutes computes every route this host advertises. Nothing is
// exported without a tunnel source: it is the next hop, and a path that
// points nowhere must not leave the host.
func exportRoutes(in *intent, label labelFunc) (map[exportKey]exportRoute, error) {
	out := make(map[exportKey]exportRoute)
	if !in.endpoint.IsValid() {
		return out, nil
	}
	for _, v := range in.vrfs {
		if err := floatingExports(out, in, v, label); err != nil {
			return nil, err
		}
		if err := vrfExports(out, in, v, label); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// vrfExports adds the routes and service addresses of v to out (its
// floating IPs are floatingExports').
func vrfExports(out map[exportKey]exportRoute, in *intent, v vrfSpec, label labelFunc) error {
	if v.rd == 0 || len(v.exportRTs) == 0 {
		return nil
	}
	for _, p := range v.routes {
		lbl, err := label(v.name, v.labelMode, p)
		if err != nil {
			return fmt.Errorf("label for %s in vrf %q: %w", p, v.name, err)
		}
		out[exportKey{v.name, p}] = exportRoute{
			rd:      v.rd,
			prefix:  p,
			label:   lbl,
			rts:     v.exportRTs,
			encap:   v.encap,
			nexthop: in.endpoint,
		}
	}
	// Service addresses carry the VRF label whatever the mode: the
	// receiving forwarder picks a local backend (services.go).
	for _, p := range v.services {
		lbl, err := label(v.name, labelPerVRF, p)
		if err != nil {
			return fmt.Errorf("label for service %s in vrf %q: %w", p, v.name, err)
		}
		out[exportKey{v.name, p}] = exportRoute{rd: v.rd, prefix: p, label: lbl, rts: v.exportRTs, encap: v.encap, nexthop: in.endpoint}
	}
	return nil
}

// path translates an exported route into a GoBGP path: RD:prefix with the
// label in the NLRI, the export route targets and, for MPLS over UDP, the
// RFC 9012 encapsulation community with tunnel type 13. The next hop is the
// tunnel source, not the BGP session's address.
func (r exportRoute) path(withdraw bool) (*apiutil.Path, error) {
	if r.unicast {
		return r.unicastPath(withdraw)
	}
	nlri, err := bgp.NewLabeledVPNIPAddrPrefix(r.prefix, *bgp.NewMPLSLabelStack(r.label), r.rd.distinguisher())
	if err != nil {
		return nil, fmt.Errorf("build nlri %s:%s: %w", r.rd, r.prefix, err)
	}
	mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv4_VPN, []bgp.PathNLRI{{NLRI: nlri}}, r.nexthop)
	if err != nil {
		return nil, fmt.Errorf("build next hop %s for %s:%s: %w", r.nexthop, r.rd, r.prefix, err)
	}
	ecs := make([]bgp.ExtendedCommunityInterface, 0, len(r.rts)+1)
	for _, t := range r.rts {
		ecs = append(ecs, t.community())
	}
	if r.encap == nos.EncapMPLSoUDP {
		ecs = append(ecs, bgp.NewEncapExtended(bgp.TUNNEL_TYPE_MPLS_IN_UDP))
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		mp,
		bgp.NewPathAttributeExtendedCommunities(ecs),
	}
	return &apiutil.Path{Family: bgp.RF_IPv4_VPN, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}, nil
}

// exportDiff compares the routes advertised now with the routes wanted and
// returns the paths to add and the paths to withdraw. A route whose RD
// changes is withdrawn under the old RD, since RD:prefix is its identity;
// any other change is an implicit replace.
func exportDiff(old, want map[exportKey]exportRoute) (add, del []exportRoute) {
	for k, w := range want {
		o, ok := old[k]
		switch {
		case !ok:
			add = append(add, w)
		case !o.equal(w):
			if o.rd != w.rd || o.prefix != w.prefix {
				del = append(del, o)
			}
			add = append(add, w)
		}
	}
	for k, o := range old {
		if _, ok := want[k]; !ok {
			del = append(del, o)
		}
	}
	sortRoutes(add)
	sortRoutes(del)
	return add, del
}

func sortRoutes(rs []exportRoute) {
	slices.SortFunc(rs, func(a, b exportRoute) int {
		if a.rd != b.rd {
			if a.rd < b.rd {
				return -1
			}
			return 1
		}
		return a.prefix.Addr().Compare(b.prefix.Addr())*64 + (a.prefix.Bits() - b.prefix.Bits())
	})
}
