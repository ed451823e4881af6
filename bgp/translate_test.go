package bgp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

var cmpOpts = []cmp.Option{
	cmp.AllowUnexported(intent{}, globalSpec{}, neighborSpec{}, grSpec{}, timerSpec{}, vrfSpec{}, exportRoute{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestNeighborToAPI(t *testing.T) {
	vpn := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_MPLS_VPN}
	for _, tc := range []struct {
		name       string
		in         neighborSpec
		restarting bool
		want       *api.Peer
	}{{
		name: "minimal",
		in: neighborSpec{address: netip.MustParseAddr("10.0.0.2"), peerAS: 65001, enabled: true,
			timers: timerSpec{connectRetry: 5, holdTime: 90, keepalive: 30}, families: familyVPNv4},
		want: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: "10.0.0.2", PeerAsn: 65001},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 90, KeepaliveInterval: 30}},
			Transport: &api.Transport{},
			AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: vpn, Enabled: true},
				MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{}}}},
		},
	}, {
		name: "every leaf",
		in: neighborSpec{address: netip.MustParseAddr("10.0.0.3"), peerAS: 65002, description: "dc gateway",
			enabled: false, authPassword: "s3cret", localAddress: netip.MustParseAddr("10.0.0.1"), passive: true,
			remotePort: 1790, timers: timerSpec{connectRetry: 1, holdTime: 9, keepalive: 3, minAdvertisement: 2},
			gr: grSpec{enabled: true, restartTime: 60, staleRoutesTime: 300}, rrClient: true,
			clusterID: netip.MustParseAddr("1.1.1.1"), multihop: true, multihopTTL: 4, families: familyVPNv4 | familyIPv4},
		restarting: true,
		want: &api.Peer{
			Conf: &api.PeerConf{NeighborAddress: "10.0.0.3", PeerAsn: 65002, Description: "dc gateway",
				AuthPassword: "s3cret", AdminDown: true},
			Timers: &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 9, KeepaliveInterval: 3,
				MinimumAdvertisementInterval: 2}},
			Transport:       &api.Transport{LocalAddress: "10.0.0.1", PassiveMode: true, RemotePort: 1790},
			GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: 60, StaleRoutesTime: 300, LocalRestarting: true},
			AfiSafis: []*api.AfiSafi{
				{Config: &api.AfiSafiConfig{Family: vpn, Enabled: true},
					MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}},
				{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
					MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}},
			},
			RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: "1.1.1.1"},
			EbgpMultihop:   &api.EbgpMultihop{Enabled: true, MultihopTtl: 4},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := neighborToAPI(tc.in, tc.restarting)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("neighborToAPI (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGlobalToAPI(t *testing.T) {
	got := globalToAPI(globalSpec{as: 65000, routerID: netip.MustParseAddr("10.0.0.1"), listenPort: -1})
	want := &api.Global{Asn: 65000, RouterId: "10.0.0.1", ListenPort: -1}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("globalToAPI (-want +got):\n%s", diff)
	}
}

func TestIntentOf(t *testing.T) {
	d := &gen.Device{}
	hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1", gr: true,
		neighbors: []nbrConf{{addr: "10.0.0.2", as: 65001, local: "10.0.0.1", rrClient: true, password: "pw"}},
		vrfs: []vrfConf{
			{name: "red", rd: "10.0.0.1:1", imp: []string{"65000:1", "65000:3"}, exp: []string{"65000:1"},
				pool: "10.1.0.0/24", pods: []string{"10.1.0.6", "10.1.0.5"}, statics: []string{"172.20.0.0/16"}},
			{name: "blue", rd: "65000:2", imp: []string{"65000:2"}, perPrefix: true, mplsMPLS: true},
		}}.build(d)
	got, err := intentOf(d, local{listenPort: 179})
	if err != nil {
		t.Fatal(err)
	}
	rt1, rt2, rt3 := mustRT(t, "65000:1"), mustRT(t, "65000:2"), mustRT(t, "65000:3")
	want := &intent{
		global: globalSpec{as: 65000, routerID: netip.MustParseAddr("10.0.0.1"), listenPort: 179},
		neighbors: map[netip.Addr]neighborSpec{netip.MustParseAddr("10.0.0.2"): {
			address: netip.MustParseAddr("10.0.0.2"), peerAS: 65001, enabled: true, authPassword: "pw",
			localAddress: netip.MustParseAddr("10.0.0.1"),
			timers:       timerSpec{connectRetry: 1, holdTime: 9, keepalive: 3},
			gr:           grSpec{enabled: true, restartTime: 30, staleRoutesTime: defaultStaleRoutesTime},
			rrClient:     true, families: familyVPNv4,
		}},
		vrfs: map[string]vrfSpec{
			"red": {name: "red", rd: mustRD(t, "10.0.0.1:1"), importRTs: []rt{rt1, rt3}, exportRTs: []rt{rt1},
				encap: nos.EncapMPLSoUDP, routes: []netip.Prefix{
					netip.MustParsePrefix("10.1.0.5/32"), netip.MustParsePrefix("10.1.0.6/32"), netip.MustParsePrefix("172.20.0.0/16")}},
			"blue": {name: "blue", rd: mustRD(t, "65000:2"), importRTs: []rt{rt2}, exportRTs: []rt{},
				labelMode: labelPerPrefix, encap: nos.EncapMPLSoMPLS},
		},
		endpoint: netip.MustParseAddr("192.0.2.1"),
		bgpPath:  "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp",
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("intentOf (-want +got):\n%s", diff)
	}
	if !got.transit() {
		t.Errorf("a speaker with a route-reflector client is transit")
	}
}

func TestIntentOfErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(d *gen.Device)
	}{
		{"bad rd", func(d *gen.Device) {
			d.NetworkInstances.NetworkInstance["red"].Config.RouteDistinguisher = strPtr("nonsense")
		}},
		{"bad rt", func(d *gen.Device) {
			d.NetworkInstances.NetworkInstance["red"].Config.ImportRouteTarget = []string{"1:2:3"}
		}},
		{"bad source", func(d *gen.Device) { d.Tunnel.Config.SourceAddress = strPtr("2001:db8::1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &gen.Device{}
			hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1",
				vrfs: []vrfConf{{name: "red", rd: "10.0.0.1:1", imp: []string{"65000:1"}}}}.build(d)
			tc.edit(d)
			if _, err := intentOf(d, local{}); err == nil {
				t.Errorf("intentOf accepted it")
			}
		})
	}
}

// TestNeighborWithoutOptionalContainers: a neighbor given only its address
// and AS (no timers, transport, graceful-restart containers) gets the
// defaults; it once crashed the daemon.
func TestNeighborWithoutOptionalContainers(t *testing.T) {
	d := &gen.Device{}
	hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1"}.build(d)
	bgp := d.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetOrCreateBgp()
	n := bgp.GetOrCreateNeighbors().GetOrCreateNeighbor("10.0.0.9")
	n.GetOrCreateConfig().PeerAs = ygotUint32(65009)
	got, err := intentOf(d, local{})
	if err != nil {
		t.Fatal(err)
	}
	ts := got.neighbors[netip.MustParseAddr("10.0.0.9")].timers
	if ts.holdTime != defaultHoldTime || ts.keepalive != defaultKeepalive || ts.connectRetry != defaultConnectRetry {
		t.Fatalf("timers = %+v, want the defaults", ts)
	}

	// No config container at all (peer-as missing is an error, not a
	// crash), and an address family without its config container.
	bare := bgp.GetOrCreateNeighbors().GetOrCreateNeighbor("10.0.0.10")
	if _, err := intentOf(d, local{}); err == nil {
		t.Errorf("a neighbor without peer-as was accepted")
	}
	bare.GetOrCreateConfig().PeerAs = ygotUint32(65010)
	bare.GetOrCreateAfiSafis().GetOrCreateAfiSafi(gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST)
	got, err = intentOf(d, local{})
	if err != nil {
		t.Fatal(err)
	}
	if n := got.neighbors[netip.MustParseAddr("10.0.0.10")]; !n.enabled || n.families != familyVPNv4 {
		t.Errorf("bare neighbor: %+v", n)
	}
}

func ygotUint32(v uint32) *uint32 { return &v }

func strPtr(s string) *string { return &s }

func mustRT(t testing.TB, s string) rt {
	t.Helper()
	v, err := parseRT(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustRD(t *testing.T, s string) rd {
	t.Helper()
	v, err := parseRD(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRTAndRD(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"65000:1", "65000:1"},
		{"65000:4294967295", "65000:4294967295"},
		{"10.0.0.1:7", "10.0.0.1:7"},
		{"4200000000:9", "64086.59904:9"}, // GoBGP formats 4-byte ASes asdot
		{"64086.59904:9", "64086.59904:9"},
	} {
		if got := mustRT(t, tc.in).String(); got != tc.want {
			t.Errorf("route target %q formats as %q, want %q", tc.in, got, tc.want)
		}
		if got := mustRD(t, tc.in).String(); got != tc.want {
			t.Errorf("route distinguisher %q formats as %q, want %q", tc.in, got, tc.want)
		}
		ec, err := bgp.ParseRouteTarget(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := rtOf(ec); !ok || v != mustRT(t, tc.in) {
			t.Errorf("route target %q: wire form %x, GoBGP's %x", tc.in, mustRT(t, tc.in), v)
		}
	}
	for _, bad := range []string{"", "65000", "1:2:3", "4200000000:70000", "10.0.0.1:70000", "x:1", "65000:-1", "2001:db8::1:1"} {
		if _, err := parseRT(bad); err == nil {
			t.Errorf("parseRT(%q) accepted it", bad)
		}
		if _, err := parseRD(bad); err == nil {
			t.Errorf("parseRD(%q) accepted it", bad)
		}
	}
}

func TestExport(t *testing.T) {
	rt1 := mustRT(t, "65000:1")
	in := &intent{endpoint: netip.MustParseAddr("192.0.2.1"), vrfs: map[string]vrfSpec{
		"red": {name: "red", rd: mustRD(t, "10.0.0.1:1"), exportRTs: []rt{rt1}, encap: nos.EncapMPLSoUDP,
			routes: []netip.Prefix{netip.MustParsePrefix("10.1.0.5/32"), netip.MustParsePrefix("10.1.0.6/32")}},
		"blue": {name: "blue", rd: mustRD(t, "10.0.0.1:2"), exportRTs: []rt{rt1}, labelMode: labelPerPrefix,
			encap: nos.EncapMPLSoMPLS, routes: []netip.Prefix{netip.MustParsePrefix("10.2.0.5/32")}},
		"noexport": {name: "noexport", rd: mustRD(t, "10.0.0.1:3"), routes: []netip.Prefix{netip.MustParsePrefix("10.3.0.5/32")}},
	}}
	label := func(vrf string, mode labelMode, p netip.Prefix) (uint32, error) {
		if mode == labelPerPrefix {
			return 200000 + uint32(p.Addr().As4()[3]), nil
		}
		return 100000, nil
	}
	got, err := exportRoutes(in, label)
	if err != nil {
		t.Fatal(err)
	}
	nh := netip.MustParseAddr("192.0.2.1")
	want := map[exportKey]exportRoute{
		{"red", netip.MustParsePrefix("10.1.0.5/32")}: {rd: mustRD(t, "10.0.0.1:1"), prefix: netip.MustParsePrefix("10.1.0.5/32"),
			label: 100000, rts: []rt{rt1}, encap: nos.EncapMPLSoUDP, nexthop: nh},
		{"red", netip.MustParsePrefix("10.1.0.6/32")}: {rd: mustRD(t, "10.0.0.1:1"), prefix: netip.MustParsePrefix("10.1.0.6/32"),
			label: 100000, rts: []rt{rt1}, encap: nos.EncapMPLSoUDP, nexthop: nh},
		{"blue", netip.MustParsePrefix("10.2.0.5/32")}: {rd: mustRD(t, "10.0.0.1:2"), prefix: netip.MustParsePrefix("10.2.0.5/32"),
			label: 200005, rts: []rt{rt1}, encap: nos.EncapMPLSoMPLS, nexthop: nh},
	}
	if diff := cmp.Diff(want, got, append(cmpOpts, cmp.AllowUnexported(exportKey{}))...); diff != "" {
		t.Errorf("exportRoutes (-want +got):\n%s", diff)
	}

	// The path carries RD:prefix, the label, the RT and ET:13.
	p, err := got[exportKey{"red", netip.MustParsePrefix("10.1.0.5/32")}].path(false)
	if err != nil {
		t.Fatal(err)
	}
	rcv, why := readPath(withPeer(p, "10.9.9.9"), nil)
	if why != rejectNone {
		t.Fatalf("our own path is rejected: %v", why)
	}
	if rcv.rd != mustRD(t, "10.0.0.1:1") || rcv.label != 100000 || rcv.endpoint != nh || rcv.encap != nos.EncapMPLSoUDP ||
		len(rcv.rts) != 1 || rcv.rts[0] != rt1 {
		t.Errorf("exported path reads back as %+v", rcv)
	}

	// Moving a pod: one add, one withdraw; changing the RD withdraws under
	// the old RD.
	in2 := &intent{endpoint: nh, vrfs: map[string]vrfSpec{
		"red": {name: "red", rd: mustRD(t, "10.0.0.1:9"), exportRTs: []rt{rt1}, encap: nos.EncapMPLSoUDP,
			routes: []netip.Prefix{netip.MustParsePrefix("10.1.0.5/32"), netip.MustParsePrefix("10.1.0.7/32")}},
	}}
	got2, _ := exportRoutes(in2, label)
	add, del := exportDiff(got, got2)
	if len(add) != 2 || len(del) != 3 {
		t.Errorf("diff: %d adds, %d withdrawals; want 2 adds (.5 under the new RD, .7) and 3 withdrawals (.5 under the old RD, .6, blue)", len(add), len(del))
	}
	if add, del := exportDiff(got2, got2); len(add)+len(del) != 0 {
		t.Errorf("no change made %d adds, %d withdrawals", len(add), len(del))
	}
}
