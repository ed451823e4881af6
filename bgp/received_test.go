package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/isthmus-net/isthmus/nos"
)

// gobgpPeer is a second GoBGP speaker in the test process, announcing
// VPNv4 paths of its own to one neighbor.
type gobgpPeer struct {
	t   *testing.T
	srv *server.BgpServer
}

// newGoBGPPeer starts a speaker listening on addr:port that accepts a
// session from neighbor.
func newGoBGPPeer(t *testing.T, addr string, port int32, as uint32, neighbor string) *gobgpPeer {
	t.Helper()
	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger(testLogger(t), nil), nil))
	go srv.Serve()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: as, RouterId: addr, ListenPort: port, ListenAddresses: []string{addr}}})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: neighbor, PeerAsn: as},
		Transport: &api.Transport{PassiveMode: true, LocalAddress: addr},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_MPLS_VPN}, Enabled: true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &gobgpPeer{t: t, srv: srv}
}

// announce adds (or, with withdraw, removes) count /32s from first.
func (p *gobgpPeer) announce(b vpnBatch, withdraw bool) {
	p.t.Helper()
	d, err := parseRD(b.rd)
	if err != nil {
		p.t.Fatal(err)
	}
	var rts []rt
	for _, s := range b.rts {
		rts = append(rts, mustRT(p.t, s))
	}
	var paths []*apiutil.Path
	a := b.first
	for range b.count {
		path, err := exportRoute{rd: d, prefix: netip.PrefixFrom(a, 32), label: b.label, rts: rts, encap: nos.EncapMPLSoUDP,
			nexthop: netip.MustParseAddr(b.nexthop)}.path(withdraw)
		if err != nil {
			p.t.Fatal(err)
		}
		paths = append(paths, path)
		a = a.Next()
	}
	if withdraw {
		err = p.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths})
	} else {
		_, err = p.srv.AddPath(apiutil.AddPathRequest{Paths: paths})
	}
	if err != nil {
		p.t.Fatal(err)
	}
}

// TestPrefixCountsExact: a neighbor's received and installed prefix
// counts are exactly what the peer announces, with 5 paths and with
// 1,000, after withdrawals and with paths that are rejected, and they
// catch up without any further event.
func TestPrefixCountsExact(t *testing.T) {
	const us, peer, port = "127.100.9.1", "127.100.9.2", 1798
	n := startNode(t, Config{ListenPort: -1, PeerPort: port})
	h := hostConf{as: 65000, routerID: "10.0.9.1", endpoint: "192.0.2.91",
		neighbors: []nbrConf{{addr: peer, as: 65000, local: us}},
		vrfs:      []vrfConf{{name: "red", rd: "10.0.9.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.9.0.0/24"}}}
	startSpeakers([]*node{n}, []hostConf{h}) // before the peer starts: see startSpeakers
	p := newGoBGPPeer(t, peer, port, 65000, us)
	n.commit(h)
	counts := func(received, installed, rejected uint32) func() bool {
		return func() bool {
			v := n.neighborState(peer)
			return v.received == received && v.installed == installed && n.rejected(peer) == rejected
		}
	}
	wait := func(what string, received, installed, rejected uint32) {
		t.Helper()
		start := time.Now()
		eventually(t, 60*time.Second, what, counts(received, installed, rejected))
		t.Logf("%s: %v", what, time.Since(start))
		time.Sleep(2 * stateInterval)
		if v := n.neighborState(peer); v.received != received || v.installed != installed {
			t.Fatalf("%s: received %d installed %d after settling, want %d %d", what, v.received, v.installed, received, installed)
		}
	}
	good := vpnBatch{rd: "10.0.9.2:1", rts: []string{"65000:1"}, nexthop: "192.0.2.92", label: 100, first: netip.MustParseAddr("10.90.0.0")}

	b := good
	b.count = 5
	p.announce(b, false)
	wait("5 paths", 5, 5, 0)

	b.first, b.count = netip.MustParseAddr("10.90.0.5"), 995
	p.announce(b, false)
	wait("1,000 paths", 1000, 1000, 0)

	b.first, b.count = netip.MustParseAddr("10.90.0.0"), 400
	p.announce(b, true)
	wait("600 paths after 400 withdrawals", 600, 600, 0)

	bad := vpnBatch{rd: "10.0.9.2:1", rts: []string{"65000:1"}, nexthop: "127.0.0.1", label: 100, first: netip.MustParseAddr("10.91.0.0"), count: 10}
	p.announce(bad, false) // loopback next hop: received, rejected
	other := vpnBatch{rd: "10.0.9.2:1", rts: []string{"65000:99"}, nexthop: "192.0.2.92", label: 100, first: netip.MustParseAddr("10.92.0.0"), count: 7}
	p.announce(other, false) // no VRF imports it: received, not installed
	wait("rejected and unimported paths", 617, 600, 10)
	if total, _ := n.core.FIB().Len(); total != 600 {
		t.Errorf("FIB has %d routes, want 600", total)
	}
}
