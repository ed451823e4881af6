package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/isthmus-net/isthmus/gen"
)

// withFloating returns h's configuration plus floating pool
// 198.51.100.0/28 in red, floating IPs addr → pod, and the IPV4_UNICAST
// family toward every neighbor.
func withFloating(h hostConf, bind map[string]string) func(*gen.Device) error {
	return func(d *gen.Device) error {
		*d = gen.Device{}
		h.build(d)
		ni := d.NetworkInstances.NetworkInstance["red"]
		ni.GetOrCreateExternal().GetOrCreateConfig().FloatingPool = []string{"198.51.100.0/28"}
		for a, pod := range bind {
			c := ni.GetOrCreateExternal().GetOrCreateFloatingIps().GetOrCreateFloatingIp(a).GetOrCreateConfig()
			c.Address, c.PodAddress = ygot.String(a), ygot.String(pod)
		}
		b := d.NetworkInstances.NetworkInstance["default"].GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp()
		if b.GetNeighbors() == nil {
			return nil
		}
		for _, nb := range b.GetNeighbors().Neighbor {
			af := nb.GetOrCreateAfiSafis().GetOrCreateAfiSafi(gen.IsthmusTypes_AfiSafiType_IPV4_UNICAST).GetOrCreateConfig()
			af.AfiSafiName, af.Enabled = gen.IsthmusTypes_AfiSafiType_IPV4_UNICAST, ygot.Bool(true)
		}
		return nil
	}
}

// TestFloatingRoutes: a floating IP is exported as an IPv4 unicast /32
// with the tunnel source as next hop while its pod is a pod of this host
// in the VRF; a binding to a pod elsewhere is not.
func TestFloatingRoutes(t *testing.T) {
	h := hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1",
		vrfs: []vrfConf{{name: "red", rd: "10.0.0.1:1", exp: []string{"65000:1"}, pool: "10.1.0.0/24", pods: []string{"10.1.0.5"}}}}
	d := &gen.Device{}
	if err := withFloating(h, map[string]string{"198.51.100.5": "10.1.0.5", "198.51.100.6": "10.1.0.9"})(d); err != nil {
		t.Fatal(err)
	}
	in, err := intentOf(d, local{})
	if err != nil {
		t.Fatal(err)
	}
	floatingRoutes(in, d)
	routes, err := exportRoutes(in, func(string, labelMode, netip.Prefix) (uint32, error) { return 100, nil })
	if err != nil {
		t.Fatal(err)
	}
	f := mustPrefix("198.51.100.5/32")
	r, ok := routes[exportKey{"red", f}]
	if !ok || !r.unicast || r.nexthop != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("floating route %+v (present %v), want unicast via 192.0.2.1", r, ok)
	}
	if _, ok := routes[exportKey{"red", mustPrefix("198.51.100.6/32")}]; ok {
		t.Errorf("a floating IP of a pod of another host is exported")
	}
	p, err := r.path(false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Family != bgp.RF_IPv4_UC || p.Nlri.String() != "198.51.100.5/32" || nexthopOf(p) != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("path %v %v next hop %v, want IPv4 unicast 198.51.100.5/32 via 192.0.2.1", p.Family, p.Nlri, nexthopOf(p))
	}
}

func nexthopOf(p *apiutil.Path) netip.Addr {
	for _, a := range p.Attrs {
		if nh, ok := a.(*bgp.PathAttributeNextHop); ok {
			return nh.Value
		}
	}
	return netip.Addr{}
}

// TestFloatingMovesBetweenHosts: two hosts and a router (a GoBGP speaker
// with IPv4 unicast sessions to both, as a provider or data-center
// router). The router learns the floating IP from the host of its pod,
// with that host's tunnel source as next hop; when the binding moves to a
// pod of the other host, the first withdraws it and the second advertises
// it, and the router's only path is the second's.
func TestFloatingMovesBetweenHosts(t *testing.T) {
	ctx := context.Background()
	const router = "127.100.7.1"
	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger(testLogger(t), nil), nil))
	go srv.Serve()
	t.Cleanup(srv.Stop)
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: router, ListenPort: 1790, ListenAddresses: []string{router}}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"127.100.7.2", "127.100.7.3"} {
		err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n, PeerAsn: 65000},
			Transport: &api.Transport{PassiveMode: true, LocalAddress: router},
			AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	hosts := []hostConf{
		{as: 65000, routerID: "10.0.0.2", endpoint: "192.0.2.2", neighbors: []nbrConf{{addr: router, as: 65000, local: "127.100.7.2"}},
			vrfs: []vrfConf{{name: "red", rd: "10.0.0.2:1", exp: []string{"65000:1"}, pool: "10.1.0.0/24", pods: []string{"10.1.0.5"}}}},
		{as: 65000, routerID: "10.0.0.3", endpoint: "192.0.2.3", neighbors: []nbrConf{{addr: router, as: 65000, local: "127.100.7.3"}},
			vrfs: []vrfConf{{name: "red", rd: "10.0.0.3:1", exp: []string{"65000:1"}, pool: "10.1.1.0/24", pods: []string{"10.1.1.7"}}}},
	}
	nodes := []*node{startNode(t, loopbackConfig("127.100.7.2")), startNode(t, loopbackConfig("127.100.7.3"))}
	commit := func(i int, bind map[string]string) {
		t.Helper()
		if _, err := nodes[i].core.Commit(ctx, "test", withFloating(hosts[i], bind)); err != nil {
			t.Fatalf("commit on host %d: %v", i, err)
		}
	}
	// Both hosts hold both pods' pools for the binding's validation.
	hosts[0].vrfs[0].pool, hosts[1].vrfs[0].pool = "10.1.0.0/23", "10.1.0.0/23"
	commit(0, map[string]string{"198.51.100.5": "10.1.0.5"})
	commit(1, nil)
	fip := mustPrefix("198.51.100.5/32")
	nexthops := func() []netip.Addr {
		var out []netip.Addr
		err := srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
			func(prefix bgp.NLRI, paths []*apiutil.Path) {
				if prefix.String() != fip.String() {
					return
				}
				for _, p := range paths {
					out = append(out, nexthopOf(p))
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	only := func(want string) func() bool {
		return func() bool {
			nh := nexthops()
			return len(nh) == 1 && nh[0] == netip.MustParseAddr(want)
		}
	}
	eventually(t, 20*time.Second, "the floating IP via host 0 (192.0.2.2)", only("192.0.2.2"))

	commit(0, nil)
	commit(1, map[string]string{"198.51.100.5": "10.1.1.7"})
	eventually(t, 20*time.Second, "the floating IP via host 1 (192.0.2.3) only", only("192.0.2.3"))
}
