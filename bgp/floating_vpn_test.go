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

// withFloatingVPN returns h's configuration plus floating pool
// 198.51.100.0/28 in red, advertised as VPNv4 in VRF public, and floating
// IPs addr → pod.
func withFloatingVPN(h hostConf, bind map[string]string) func(*gen.Device) error {
	return func(d *gen.Device) error {
		*d = gen.Device{}
		h.build(d)
		c := d.NetworkInstances.NetworkInstance["red"].GetOrCreateExternal().GetOrCreateConfig()
		c.FloatingPool = []string{"198.51.100.0/28"}
		c.FloatingAdvertise = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config_FloatingAdvertise_VPNV4
		c.FloatingNetworkInstance = ygot.String("public")
		for a, pod := range bind {
			f := d.NetworkInstances.NetworkInstance["red"].GetOrCreateExternal().GetOrCreateFloatingIps().GetOrCreateFloatingIp(a).GetOrCreateConfig()
			f.Address, f.PodAddress = ygot.String(a), ygot.String(pod)
		}
		return nil
	}
}

// TestFloatingVPNMovesBetweenHosts: two hosts and a router (a GoBGP
// speaker with VPNv4 sessions to both). The router learns the floating IP
// as a VPNv4 route of the external VRF public of the host of its pod: that
// VRF's RD and export route target, its per-VRF label, the host's tunnel
// source as next hop, MPLS over UDP; red's own RD and RT are not used.
// When the binding moves to a pod of the other host, the first withdraws
// it and the router's only path is the second's.
func TestFloatingVPNMovesBetweenHosts(t *testing.T) {
	ctx := context.Background()
	const router = "127.100.8.1"
	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger(testLogger(t), nil), nil))
	go srv.Serve()
	t.Cleanup(srv.Stop)
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: router, ListenPort: 1790, ListenAddresses: []string{router}}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"127.100.8.2", "127.100.8.3"} {
		err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n, PeerAsn: 65000},
			Transport: &api.Transport{PassiveMode: true, LocalAddress: router},
			AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_MPLS_VPN}, Enabled: true}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	host := func(id, local string, pod string) hostConf {
		return hostConf{as: 65000, routerID: "10.0.0." + id, endpoint: "192.0.2." + id,
			neighbors: []nbrConf{{addr: router, as: 65000, local: local}},
			vrfs: []vrfConf{
				{name: "red", rd: "10.0.0." + id + ":1", exp: []string{"65000:1"}, pool: "10.1.0.0/23", pods: []string{pod}},
				{name: "public", rd: "10.0.0." + id + ":100", imp: []string{"65000:200"}, exp: []string{"65000:100"}},
			}}
	}
	hosts := []hostConf{host("2", "127.100.8.2", "10.1.0.5"), host("3", "127.100.8.3", "10.1.1.7")}
	nodes := []*node{startNode(t, loopbackConfig("127.100.8.2")), startNode(t, loopbackConfig("127.100.8.3"))}
	commit := func(i int, bind map[string]string) {
		t.Helper()
		if _, err := nodes[i].core.Commit(ctx, "test", withFloatingVPN(hosts[i], bind)); err != nil {
			t.Fatalf("commit on host %d: %v", i, err)
		}
	}
	commit(0, map[string]string{"198.51.100.5": "10.1.0.5"})
	commit(1, nil)
	fip := mustPrefix("198.51.100.5/32")
	paths := func() []received {
		var out []received
		err := srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_VPN},
			func(_ bgp.NLRI, ps []*apiutil.Path) {
				for _, p := range ps {
					if r, rej := readPath(p, nil); rej == rejectNone && r.prefix == fip {
						out = append(out, r)
					}
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rt100, err := parseRTs([]string{"65000:100"})
	if err != nil {
		t.Fatal(err)
	}
	only := func(i int) func() bool {
		return func() bool {
			ps := paths()
			if len(ps) != 1 {
				return false
			}
			want, err := parseRD(hosts[i].vrfs[1].rd)
			if err != nil {
				t.Fatal(err)
			}
			lbl, err := nodes[i].core.Labels().VRF("public")
			if err != nil {
				t.Fatal(err)
			}
			p := ps[0]
			return p.rd == want && p.label == lbl && p.endpoint == netip.MustParseAddr(hosts[i].endpoint) &&
				len(p.rts) == 1 && p.rts[0] == rt100[0] && p.encap != 0
		}
	}
	eventually(t, 20*time.Second, "the floating IP in public's RD 10.0.0.2:100 with RT 65000:100 and public's label, via 192.0.2.2", only(0))

	commit(0, nil)
	commit(1, map[string]string{"198.51.100.5": "10.1.1.7"})
	eventually(t, 20*time.Second, "the floating IP in public's RD 10.0.0.3:100 via 192.0.2.3 only", only(1))
}
