package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/gen"
)

// TestBadRoutesOnTheWire: a peer sends good routes mixed with routes
// without RT, with label 0, with an unusable next hop and with our own
// endpoint. Only the good ones are installed; the bad ones are counted;
// the session stays up.
func TestBadRoutesOnTheWire(t *testing.T) {
	const us, peer, port = "127.100.5.1", "127.100.5.2", 1791
	fp := newFakePeer(t, peer, port, 65099)
	n := startNode(t, Config{ListenPort: -1, PeerPort: port})
	n.commit(hostConf{as: 65000, routerID: "10.0.5.1", endpoint: "192.0.2.51",
		neighbors: []nbrConf{{addr: peer, as: 65099, local: us}},
		vrfs:      []vrfConf{{name: "red", rd: "10.0.5.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.5.0.0/24"}}})
	fp.accept()

	base := vpnBatch{rd: "65099:1", rts: []string{"65000:1"}, nexthop: "192.0.2.99", label: 100, count: 10, peerAS: 65099}
	var msgs [][]byte
	add := func(first string, edit func(b *vpnBatch)) {
		b := base
		b.first = netip.MustParseAddr(first)
		edit(&b)
		msgs = append(msgs, vpnUpdates(t, b)...)
	}
	add("10.50.0.0", func(b *vpnBatch) {})                                 // good
	add("10.51.0.0", func(b *vpnBatch) { b.rts = nil; b.noTunnel = true }) // no RT at all
	add("10.52.0.0", func(b *vpnBatch) { b.label = 0 })                    // label 0
	add("10.53.0.0", func(b *vpnBatch) { b.nexthop = "127.0.0.1" })        // loopback next hop
	add("10.54.0.0", func(b *vpnBatch) { b.nexthop = "192.0.2.51" })       // our own endpoint
	add("10.55.0.0", func(b *vpnBatch) { b.rts = []string{"65000:77"} })   // no VRF imports it
	fp.sendAll(msgs)

	eventually(t, 20*time.Second, "rejects counted", func() bool {
		c := n.bgp.rib.counters()
		return c.reasons["no-route-target"] == 10 && c.reasons["bad-label"] == 10 && c.reasons["bad-next-hop"] == 10
	})
	eventually(t, 10*time.Second, "good routes installed", func() bool { total, _ := n.core.FIB().Len(); return total == 10 })
	time.Sleep(300 * time.Millisecond)
	if total, per := n.core.FIB().Len(); total != 10 || per["red"] != 10 {
		t.Errorf("FIB has %d routes %v, want the 10 good ones in red", total, per)
	}
	for _, p := range []string{"10.51.0.1/32", "10.52.0.1/32", "10.53.0.1/32", "10.54.0.1/32", "10.55.0.1/32"} {
		if _, ok := n.route("red", p); ok {
			t.Errorf("bad route %s installed", p)
		}
	}
	eventually(t, 10*time.Second, "rejected in state", func() bool {
		v := n.neighborState(peer)
		return v.state == gen.IsthmusTypes_SessionState_ESTABLISHED && v.installed == 10 && n.rejected(peer) == 30
	})
}

func (n *node) rejected(addr string) uint32 {
	var r uint32
	n.core.Read(func(_, st *gen.Device) error {
		r = st.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").
			GetBgp().GetNeighbors().GetNeighbor(addr).GetAfiSafis().GetAfiSafi(gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST).
			GetState().GetPrefixes().GetRejected()
		return nil
	})
	return r
}
