package bgp

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Defaults of the YANG model, applied when a leaf is absent.
const (
	defaultConnectRetry    = 5
	defaultHoldTime        = 90
	defaultKeepalive       = 30
	defaultRestartTime     = 120
	defaultStaleRoutesTime = 360
	defaultMultihopTTL     = 255
)

// Paths used in errors and state.
const (
	pathBGP = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp"
)

type (
	niT       = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance
	bgpT      = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp
	neighborT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor
	grConfT   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Global_GracefulRestart_Config
)

// local are settings that come from the daemon, not from the tree.
type local struct {
	listenPort      int32
	listenAddresses []string
	peerPort        uint16
}

func invalid(path, format string, args ...any) error {
	return &nos.PathError{Path: path, Err: fmt.Errorf("%w: %s", nos.ErrInvalid, fmt.Sprintf(format, args...))}
}

// intentOf translates a configuration tree into the speaker's intent. It is
// pure; every error names the offending path.
func intentOf(d *gen.Device, loc local) (*intent, error) {
	return intentOfMemo(d, loc, nil)
}

// intentOfMemo is intentOf, taking the translation of each VRF entry that
// memo has seen before from memo (nil: none).
func intentOfMemo(d *gen.Device, loc local, memo *vrfMemo) (*intent, error) {
	in := &intent{neighbors: map[netip.Addr]neighborSpec{}, vrfs: map[string]vrfSpec{}}
	if d == nil {
		return in, nil
	}
	if s := d.GetTunnel().GetConfig().GetSourceAddress(); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, invalid("/tunnel/config/source-address", "not an IPv4 address: %q", s)
		}
		in.endpoint = a
	}
	var nis map[string]*niT
	if d.NetworkInstances != nil {
		nis = d.NetworkInstances.NetworkInstance
	}
	names := make([]string, 0, len(nis))
	for name := range nis {
		names = append(names, name)
	}
	sort.Strings(names)
	rds := map[rd]string{}
	for _, name := range names {
		ni := nis[name]
		if b, proto := bgpOf(ni); b != nil {
			in.bgpPath = fmt.Sprintf("%s/protocols/protocol[identifier=BGP][name=%s]/bgp", niPath(name), proto)
			if err := bgpIntent(in, b, loc); err != nil {
				return nil, err
			}
		}
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			continue
		}
		v, err := memo.vrfOf(name, ni, d)
		if err != nil {
			return nil, err
		}
		if other, dup := rds[v.rd]; dup && v.rd != 0 {
			return nil, invalid(niPath(name)+"/config/route-distinguisher", "%s is also the RD of %q", v.rd, other)
		}
		rds[v.rd] = name
		in.vrfs[name] = v
	}
	if err := podRoutes(in, d); err != nil {
		return nil, err
	}
	for name, v := range in.vrfs {
		slices.SortFunc(v.routes, comparePrefix)
		v.routes = slices.Compact(v.routes)
		in.vrfs[name] = v
	}
	return in, nil
}

func niPath(name string) string {
	return fmt.Sprintf("/network-instances/network-instance[name=%s]", name)
}

// bgpOf returns the BGP protocol of a DEFAULT network instance, if any,
// and the protocol's name.
func bgpOf(ni *niT) (*bgpT, string) {
	if ni.GetConfig().GetType() == gen.IsthmusTypes_NetworkInstanceType_L3VRF || ni.Protocols == nil {
		return nil, ""
	}
	for k, p := range ni.Protocols.Protocol {
		if k.Identifier == gen.IsthmusTypes_ProtocolType_BGP && p.GetBgp() != nil {
			return p.GetBgp(), k.Name
		}
	}
	return nil, ""
}

func bgpIntent(in *intent, b *bgpT, loc local) error {
	g := b.GetGlobal().GetConfig()
	in.global = globalSpec{as: g.GetAs(), listenPort: loc.listenPort, listenAddresses: loc.listenAddresses}
	if g.GetRouterId() != "" {
		a, err := netip.ParseAddr(g.GetRouterId())
		if err != nil || !a.Is4() {
			return invalid(pathBGP+"/global/config/router-id", "not an IPv4 address: %q", g.GetRouterId())
		}
		in.global.routerID = a
	}
	globalGR := b.GetGlobal().GetGracefulRestart().GetConfig()
	if b.Neighbors == nil {
		return nil
	}
	for key, n := range b.Neighbors.Neighbor {
		ns, err := neighborOf(n, globalGR, loc)
		if err != nil {
			return invalid(fmt.Sprintf("%s/neighbors/neighbor[neighbor-address=%s]", pathBGP, key), "%v", err)
		}
		in.neighbors[ns.address] = ns
	}
	return nil
}

// neighborOf resolves one neighbor: its own leaves, then the global
// graceful-restart leaves, then the model's defaults.
func neighborOf(n *neighborT, globalGR *grConfT, loc local) (neighborSpec, error) {
	c := n.GetConfig()
	addr, err := netip.ParseAddr(n.GetNeighborAddress())
	if err != nil || !addr.Is4() {
		return neighborSpec{}, fmt.Errorf("neighbor address %q is not IPv4", n.GetNeighborAddress())
	}
	ns := neighborSpec{
		address:      addr,
		peerAS:       c.GetPeerAs(),
		description:  c.GetDescription(),
		enabled:      c == nil || c.Enabled == nil || *c.Enabled,
		authPassword: c.GetAuthPassword(),
		passive:      n.GetTransport().GetConfig().GetPassiveMode(),
		remotePort:   loc.peerPort,
	}
	if ns.peerAS == 0 {
		return neighborSpec{}, fmt.Errorf("peer-as is required")
	}
	if s := n.GetTransport().GetConfig().GetLocalAddress(); s != "" {
		if ns.localAddress, err = netip.ParseAddr(s); err != nil {
			return neighborSpec{}, fmt.Errorf("local-address %q: %w", s, err)
		}
	}
	t := n.GetTimers().GetConfig()
	if t == nil {
		t = &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_Timers_Config{}
	}
	ns.timers = timerSpec{
		connectRetry:     orDefault(t.ConnectRetry, defaultConnectRetry),
		holdTime:         orDefault(t.HoldTime, defaultHoldTime),
		keepalive:        orDefault(t.KeepaliveInterval, defaultKeepalive),
		minAdvertisement: orDefault(t.MinimumAdvertisementInterval, 0),
	}
	merged := grConfT{}
	if globalGR != nil {
		merged = *globalGR
	}
	if gr := n.GetGracefulRestart().GetConfig(); gr != nil {
		merged.Enabled = cmp.Or(gr.Enabled, merged.Enabled)
		merged.RestartTime = cmp.Or(gr.RestartTime, merged.RestartTime)
		merged.StaleRoutesTime = cmp.Or(gr.StaleRoutesTime, merged.StaleRoutesTime)
	}
	ns.gr = grSpec{
		enabled:         merged.GetEnabled(),
		restartTime:     orDefault(merged.RestartTime, defaultRestartTime),
		staleRoutesTime: orDefault(merged.StaleRoutesTime, defaultStaleRoutesTime),
	}
	rr := n.GetRouteReflector().GetConfig()
	ns.rrClient = rr.GetRouteReflectorClient()
	if s := rr.GetRouteReflectorClusterId(); s != "" {
		if ns.clusterID, err = netip.ParseAddr(s); err != nil {
			return neighborSpec{}, fmt.Errorf("route-reflector-cluster-id %q: %w", s, err)
		}
	}
	mh := n.GetEbgpMultihop().GetConfig()
	ns.multihop = mh.GetEnabled()
	if ns.multihop {
		ns.multihopTTL = uint8(orDefault(mh.MultihopTtl, defaultMultihopTTL))
	}
	var afs map[gen.E_IsthmusTypes_AfiSafiType]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi
	if n.AfiSafis != nil {
		afs = n.AfiSafis.AfiSafi
	}
	for name, af := range afs {
		if c := af.GetConfig(); c != nil && c.Enabled != nil && !*c.Enabled {
			continue
		}
		switch name {
		case gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST:
			ns.families |= familyVPNv4
		case gen.IsthmusTypes_AfiSafiType_IPV4_UNICAST:
			ns.families |= familyIPv4
		}
	}
	if len(afs) == 0 {
		ns.families = familyVPNv4
	}
	return ns, nil
}

func orDefault[T ~uint8 | ~uint16](v *T, def T) uint16 {
	if v == nil {
		return uint16(def)
	}
	return uint16(*v)
}

// vrfOf translates one L3VRF. d is the whole tree: a static route counts
// only while its interface is attached (see attached).
func vrfOf(name string, ni *niT, d *gen.Device) (vrfSpec, error) {
	c := ni.GetConfig()
	v := vrfSpec{name: name, encap: nos.EncapMPLSoUDP}
	var err error
	if s := c.GetRouteDistinguisher(); s != "" {
		if v.rd, err = parseRD(s); err != nil {
			return v, invalid(niPath(name)+"/config/route-distinguisher", "%v", err)
		}
	}
	if v.importRTs, err = parseRTs(c.ImportRouteTarget); err != nil {
		return v, invalid(niPath(name)+"/config/import-route-target", "%v", err)
	}
	if v.exportRTs, err = parseRTs(c.ExportRouteTarget); err != nil {
		return v, invalid(niPath(name)+"/config/export-route-target", "%v", err)
	}
	if len(v.exportRTs) > 0 && v.rd == 0 {
		return v, invalid(niPath(name)+"/config/route-distinguisher", "required to export route targets")
	}
	if c.GetLabelAllocationMode() == gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX {
		v.labelMode = labelPerPrefix
	}
	if c.GetEncapsulation() == gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS {
		v.encap = nos.EncapMPLSoMPLS
	}
	var statics map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_StaticRoutes_Static
	if ni.StaticRoutes != nil {
		statics = ni.StaticRoutes.Static
	}
	for key, st := range statics {
		p, err := netip.ParsePrefix(key)
		if err != nil || !p.Addr().Is4() {
			return v, invalid(fmt.Sprintf("%s/static-routes/static[prefix=%s]", niPath(name), key), "not an IPv4 prefix")
		}
		if attached(d, name, st.GetConfig().GetInterface()) {
			v.routes = append(v.routes, p.Masked())
		}
	}
	return v, nil
}

// attached reports whether a static route's interface can carry it: it is
// configured under /interfaces (a pod interface is, from the moment the
// pod attaches), in the route's VRF, and not disabled. A static route may
// name a pod interface that is not attached yet: it is exported once the
// interface appears, and withdrawn when the interface goes.
func attached(d *gen.Device, vrf, ifname string) bool {
	if ifname == "" || d.Interfaces == nil {
		return false
	}
	c := d.Interfaces.Interface[ifname].GetConfig()
	return c != nil && c.GetNetworkInstance() == vrf && (c.Enabled == nil || *c.Enabled)
}

func parseRTs(ss []string) ([]rt, error) {
	out := make([]rt, 0, len(ss))
	for _, s := range ss {
		t, err := parseRT(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// podRoutes adds the /32 of every enabled pod interface to its VRF.
func podRoutes(in *intent, d *gen.Device) error {
	if d.Interfaces == nil {
		return nil
	}
	for name, ifc := range d.Interfaces.Interface {
		c := ifc.GetConfig()
		if c.GetType() != gen.IsthmusTypes_InterfaceType_POD || c.GetIpv4Address() == "" || c.GetNetworkInstance() == "" {
			continue
		}
		if c.Enabled != nil && !*c.Enabled {
			continue
		}
		v, ok := in.vrfs[c.GetNetworkInstance()]
		if !ok {
			continue
		}
		p, err := netip.ParsePrefix(c.GetIpv4Address())
		if err != nil || !p.Addr().Is4() {
			return invalid(fmt.Sprintf("/interfaces/interface[name=%s]/config/ipv4-address", name), "not an IPv4 prefix: %q", c.GetIpv4Address())
		}
		v.routes = append(v.routes, netip.PrefixFrom(p.Addr(), 32))
		in.vrfs[v.name] = v
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
