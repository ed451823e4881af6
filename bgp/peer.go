package bgp

import (
	"github.com/osrg/gobgp/v4/api"
)

// Names of the GoBGP objects this package defines.
const (
	policyLocalOnly = "isthmus-export-local"
	policyTransit   = "isthmus-export-transit"
	stmtLocal       = "isthmus-local"
	stmtTransit     = "isthmus-transit"
	stmtTransitOwn  = "isthmus-transit-local"
)

// globalToAPI translates the speaker-wide settings. GoBGP's multipath
// stays off: import sees every path each peer sends (paths for one
// RD:prefix from several hosts, as with a VRF that has the same RD
// everywhere, included) and builds its own ECMP sets, and GoBGP advertises
// best paths only either way, so multipath sets would be work nobody reads.
func globalToAPI(g globalSpec) *api.Global {
	return &api.Global{
		Asn:             g.as,
		RouterId:        g.routerID.String(),
		ListenPort:      g.listenPort,
		ListenAddresses: append([]string(nil), g.listenAddresses...),
	}
}

// familyToAPI returns the GoBGP families of a set.
func familyToAPI(f family) []*api.Family {
	var out []*api.Family
	if f&familyVPNv4 != 0 {
		out = append(out, &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_MPLS_VPN})
	}
	if f&familyIPv4 != 0 {
		out = append(out, &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST})
	}
	return out
}

// neighborToAPI translates one neighbor. restarting sets the Restart State
// and Forwarding State bits (RFC 4724) in our OPEN, which tells the peer to
// keep our routes until we have sent an End-of-RIB again.
func neighborToAPI(n neighborSpec, restarting bool) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.address.String(),
			PeerAsn:         n.peerAS,
			Description:     n.description,
			AuthPassword:    n.authPassword,
			AdminDown:       !n.enabled,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:                 uint64(n.timers.connectRetry),
			HoldTime:                     uint64(n.timers.holdTime),
			KeepaliveInterval:            uint64(n.timers.keepalive),
			MinimumAdvertisementInterval: uint64(n.timers.minAdvertisement),
		}},
		Transport: &api.Transport{
			PassiveMode: n.passive,
			RemotePort:  uint32(n.remotePort),
		},
	}
	if n.localAddress.IsValid() {
		p.Transport.LocalAddress = n.localAddress.String()
	}
	if n.gr.enabled {
		p.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(n.gr.restartTime),
			StaleRoutesTime: uint32(n.gr.staleRoutesTime),
			LocalRestarting: restarting,
		}
	}
	for _, f := range familyToAPI(n.families) {
		p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: f, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: n.gr.enabled}},
		})
	}
	if n.rrClient {
		p.RouteReflector = &api.RouteReflector{RouteReflectorClient: true}
		if n.clusterID.IsValid() {
			p.RouteReflector.RouteReflectorClusterId = n.clusterID.String()
		}
	}
	if n.multihop {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.multihopTTL)}
	}
	return p
}

// exportPolicies returns the two export policies. The local-only policy
// passes only paths this speaker originated, so a host never re-advertises
// what it learnt (GoBGP would, with itself as next hop). The transit policy,
// for a route reflector or a domain border, also passes learnt paths and
// keeps their next hop, because the next hop is the tunnel endpoint that
// owns the label.
func exportPolicies() []*api.Policy {
	local := &api.Statement{
		Name:       stmtLocal,
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}
	transitLocal := &api.Statement{
		Name:       stmtTransitOwn,
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}
	transit := &api.Statement{
		Name:       stmtTransit,
		Conditions: &api.Conditions{},
		Actions: &api.Actions{
			RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
			Nexthop:     &api.NexthopAction{Unchanged: true},
		},
	}
	return []*api.Policy{
		{Name: policyLocalOnly, Statements: []*api.Statement{local}},
		{Name: policyTransit, Statements: []*api.Statement{transitLocal, transit}},
	}
}

// exportAssignment returns the global export policy assignment for a mode.
func exportAssignment(transit bool) *api.PolicyAssignment {
	name := policyLocalOnly
	if transit {
		name = policyTransit
	}
	return &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies:      []*api.Policy{{Name: name}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}
}
