package bgp

import (
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/nos"
)

// Peer of the fuzzed UPDATEs and the importing host.
var (
	fuzzPeer     = netip.MustParseAddr("10.0.0.2")
	fuzzEndpoint = netip.MustParseAddr("192.0.2.1")
)

// updatePaths turns a decoded UPDATE into the paths GoBGP hands import:
// one per NLRI, withdrawals first, each with all of the UPDATE's
// attributes.
func updatePaths(u *bgp.BGPUpdate, peer netip.Addr, peerAS uint32) []*apiutil.Path {
	var out []*apiutil.Path
	add := func(f bgp.Family, n bgp.PathNLRI, withdraw bool) {
		out = append(out, &apiutil.Path{Family: f, Nlri: n.NLRI, Attrs: u.PathAttributes, Withdrawal: withdraw,
			PeerAddress: peer, PeerASN: peerAS, RemoteID: n.ID})
	}
	for _, n := range u.WithdrawnRoutes {
		add(bgp.RF_IPv4_UC, n, true)
	}
	for _, a := range u.PathAttributes {
		if a, ok := a.(*bgp.PathAttributeMpUnreachNLRI); ok {
			for _, n := range a.Value {
				add(bgp.NewFamily(a.AFI, a.SAFI), n, true)
			}
		}
	}
	for _, a := range u.PathAttributes {
		if a, ok := a.(*bgp.PathAttributeMpReachNLRI); ok {
			for _, n := range a.Value {
				add(bgp.NewFamily(a.AFI, a.SAFI), n, false)
			}
		}
	}
	for _, n := range u.NLRI {
		add(bgp.RF_IPv4_UC, n, false)
	}
	return out
}

// fibView is the FIB as import's batches leave it.
type fibView map[nos.RouteKey][]nos.NextHop

func (f fibView) apply(t *testing.T, changes []nos.RouteChange) {
	t.Helper()
	for _, c := range changes {
		if c.VRF != "red" && c.VRF != "blue" {
			t.Fatalf("route into unknown vrf %q", c.VRF)
		}
		if !c.Prefix.IsValid() || !c.Prefix.Addr().Is4() || c.Prefix != c.Prefix.Masked() {
			t.Fatalf("route to bad prefix %v", c.Prefix)
		}
		if c.Deleted {
			delete(f, c.RouteKey)
			continue
		}
		if len(c.NextHops) == 0 {
			t.Fatalf("route %v without next hops", c.RouteKey)
		}
		for _, nh := range c.NextHops {
			if nh.Label < 16 || nh.Label > 1<<20-1 || !usableEndpoint(nh.Endpoint) || nh.Endpoint == fuzzEndpoint ||
				(nh.Encap != nos.EncapMPLSoUDP && nh.Encap != nos.EncapMPLSoMPLS) {
				t.Fatalf("route %v with unusable next hop %+v", c.RouteKey, nh)
			}
		}
		f[c.RouteKey] = c.NextHops
	}
}

// FuzzImportUpdate feeds a received UPDATE (its bytes after the BGP
// header; addPath says whether ADD-PATH receive is negotiated for VPNv4)
// through GoBGP's parser and then import's translation into the FIB.
// Import never panics; whatever it cannot use is ignored and counted;
// what it installs is usable; the same UPDATE again changes nothing; and
// withdrawing everything the UPDATE carried leaves nothing behind.
func FuzzImportUpdate(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.addPath, s.body)
	}
	f.Fuzz(func(t *testing.T, addPath bool, body []byte) {
		opt := &bgp.MarshallingOption{}
		if addPath {
			opt.AddPath = map[bgp.Family]bgp.BGPAddPathMode{bgp.RF_IPv4_VPN: bgp.BGP_ADD_PATH_RECEIVE}
		}
		msg, err := bgp.ParseBGPBody(&bgp.BGPHeader{Type: bgp.BGP_MSG_UPDATE, Len: uint16(min(bgp.BGP_HEADER_LENGTH+len(body), 0xffff))}, body, opt)
		if err != nil {
			return // GoBGP drops or resets on it: import never sees it
		}
		u, ok := msg.Body.(*bgp.BGPUpdate)
		if !ok {
			return
		}
		paths := updatePaths(u, fuzzPeer, testAS)
		r := newFuzzRIB(t)
		fib := fibView{}

		bad := r.update(paths)
		fib.apply(t, r.flush())
		c := r.counters()
		var counted int64
		for _, n := range c.reasons {
			counted += n
		}
		if int64(bad) != counted || c.rejected[fuzzPeer] != counted {
			t.Fatalf("%d paths rejected, %d counted by reason, %d for the peer", bad, counted, c.rejected[fuzzPeer])
		}
		if c.installed[fuzzPeer] > c.received[fuzzPeer] || int(c.received[fuzzPeer]) > len(paths) {
			t.Fatalf("installed %d, received %d of %d paths", c.installed[fuzzPeer], c.received[fuzzPeer], len(paths))
		}
		first := fibView{}
		for k, v := range fib {
			first[k] = v
		}

		r.update(paths)
		fib.apply(t, r.flush())
		if len(fib) != len(first) {
			t.Fatalf("the same update again: %d routes, then %d", len(first), len(fib))
		}
		for k, v := range first {
			if got, ok := fib[k]; !ok || len(got) != len(v) {
				t.Fatalf("the same update again changed %v: %v, then %v", k, v, got)
			}
		}

		var withdraw []*apiutil.Path
		for _, p := range paths {
			w := *p
			w.Withdrawal = true
			withdraw = append(withdraw, &w)
		}
		r.update(withdraw)
		fib.apply(t, r.flush())
		if c := r.counters(); len(fib) != 0 || c.paths != 0 || c.received[fuzzPeer] != 0 || c.installed[fuzzPeer] != 0 {
			t.Fatalf("after withdrawing everything: %d routes, %d paths, received %d, installed %d",
				len(fib), c.paths, c.received[fuzzPeer], c.installed[fuzzPeer])
		}
	})
}

func newFuzzRIB(t *testing.T) *rib {
	r := newRIB()
	r.setLocalAS(testAS)
	r.setEndpoint(fuzzEndpoint)
	r.setVRFs(map[string]vrfSpec{
		"red":  {name: "red", importRTs: []rt{mustRT(t, "65000:1")}, encap: nos.EncapMPLSoUDP},
		"blue": {name: "blue", importRTs: []rt{mustRT(t, "65000:2"), mustRT(t, "192.0.2.9:7")}, encap: nos.EncapMPLSoMPLS},
	})
	return r
}

type fuzzSeed struct {
	addPath bool
	body    []byte
}

// fuzzSeeds are UPDATEs as peers send them: good paths, each kind of bad
// one, withdrawals, ADD-PATH, a plain IPv4 route.
func fuzzSeeds(tb testing.TB) []fuzzSeed {
	body := func(attrs []bgp.PathAttributeInterface, nlri []bgp.PathNLRI, opts ...*bgp.MarshallingOption) []byte {
		b, err := bgp.NewBGPUpdateMessage(nil, attrs, nlri).Serialize(opts...)
		if err != nil {
			tb.Fatal(err)
		}
		return b[bgp.BGP_HEADER_LENGTH:]
	}
	vpn := func(prefix, rdText string, label uint32, id uint32) bgp.PathNLRI {
		d, err := bgp.ParseRouteDistinguisher(rdText)
		if err != nil {
			tb.Fatal(err)
		}
		n, err := bgp.NewLabeledVPNIPAddrPrefix(netip.MustParsePrefix(prefix), *bgp.NewMPLSLabelStack(label), d)
		if err != nil {
			tb.Fatal(err)
		}
		return bgp.PathNLRI{NLRI: n, ID: id}
	}
	reach := func(nexthop string, ecs []bgp.ExtendedCommunityInterface, extra []bgp.PathAttributeInterface, nlri ...bgp.PathNLRI) []bgp.PathAttributeInterface {
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv4_VPN, nlri, netip.MustParseAddr(nexthop))
		if err != nil {
			tb.Fatal(err)
		}
		attrs := []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001, 65002})}),
			mp,
		}
		if len(ecs) > 0 {
			attrs = append(attrs, bgp.NewPathAttributeExtendedCommunities(ecs))
		}
		return append(attrs, extra...)
	}
	rts := func(ss ...string) []bgp.ExtendedCommunityInterface {
		var out []bgp.ExtendedCommunityInterface
		for _, s := range ss {
			out = append(out, mustRT(tb, s).community())
		}
		return out
	}
	udp := bgp.NewEncapExtended(bgp.TUNNEL_TYPE_MPLS_IN_UDP)
	addPath := &bgp.MarshallingOption{AddPath: map[bgp.Family]bgp.BGPAddPathMode{bgp.RF_IPv4_VPN: bgp.BGP_ADD_PATH_BOTH}}
	unreach, err := bgp.NewPathAttributeMpUnreachNLRI(bgp.RF_IPv4_VPN, []bgp.PathNLRI{vpn("10.1.0.0/24", "65000:7", 100, 0)})
	if err != nil {
		tb.Fatal(err)
	}
	plain, err := bgp.NewIPAddrPrefix(netip.MustParsePrefix("10.5.0.0/24"))
	if err != nil {
		tb.Fatal(err)
	}
	nexthop, err := bgp.NewPathAttributeNextHop(netip.MustParseAddr("192.0.2.2"))
	if err != nil {
		tb.Fatal(err)
	}
	return []fuzzSeed{
		{false, body(reach("192.0.2.2", append(rts("65000:1"), udp), nil, vpn("10.1.0.5/32", "10.0.0.2:1", 100, 0)), nil)},
		{false, body(reach("192.0.2.3", rts("65000:1", "65000:2"), []bgp.PathAttributeInterface{bgp.NewPathAttributeLocalPref(200)},
			vpn("10.1.0.0/24", "65000:7", 17, 0), vpn("10.2.0.0/16", "65000:7", 1<<20-1, 0), vpn("0.0.0.0/0", "192.0.2.9:7", 300, 0)), nil)},
		{false, body(reach("192.0.2.2", nil, nil, vpn("10.3.0.0/24", "10.0.0.2:1", 100, 0)), nil)},            // no RT
		{false, body(reach("192.0.2.2", rts("65000:1"), nil, vpn("10.3.1.0/24", "10.0.0.2:1", 0, 0)), nil)},   // label 0
		{false, body(reach("127.0.0.1", rts("65000:1"), nil, vpn("10.3.2.0/24", "10.0.0.2:1", 100, 0)), nil)}, // loopback next hop
		{false, body(reach("192.0.2.1", rts("65000:1"), nil, vpn("10.3.3.0/24", "10.0.0.2:1", 100, 0)), nil)}, // our own endpoint
		{false, body(reach("192.0.2.2", append(rts("65000:1"), bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN)), nil, // VXLAN only
			vpn("10.3.4.0/24", "10.0.0.2:1", 100, 0)), nil)},
		{false, body([]bgp.PathAttributeInterface{unreach}, nil)}, // withdrawal
		{true, body(reach("192.0.2.2", rts("65000:1"), nil, vpn("10.4.0.0/24", "10.0.0.2:1", 100, 1), vpn("10.4.0.0/24", "10.0.0.2:1", 101, 2)), nil, addPath)},
		{false, body([]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), nexthop},
			[]bgp.PathNLRI{{NLRI: plain}})}, // plain IPv4 unicast
	}
}

// TestFuzzSeeds: each seed of FuzzImportUpdate does what it stands for,
// so the fuzzer starts from every path import handles.
func TestFuzzSeeds(t *testing.T) {
	want := []struct{ routes, rejected, received int64 }{
		{1, 0, 1}, {6, 0, 3}, {0, 1, 1}, {0, 1, 1}, {0, 1, 1}, {0, 0, 1}, {0, 1, 1}, {0, 0, 0}, {1, 0, 2}, {0, 0, 0},
	}
	for i, s := range fuzzSeeds(t) {
		opt := &bgp.MarshallingOption{}
		if s.addPath {
			opt.AddPath = map[bgp.Family]bgp.BGPAddPathMode{bgp.RF_IPv4_VPN: bgp.BGP_ADD_PATH_RECEIVE}
		}
		msg, err := bgp.ParseBGPBody(&bgp.BGPHeader{Type: bgp.BGP_MSG_UPDATE, Len: uint16(bgp.BGP_HEADER_LENGTH + len(s.body))}, s.body, opt)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		r := newFuzzRIB(t)
		r.update(updatePaths(msg.Body.(*bgp.BGPUpdate), fuzzPeer, testAS))
		routes := int64(len(r.flush()))
		c := r.counters()
		if got := (struct{ routes, rejected, received int64 }{routes, c.rejected[fuzzPeer], c.received[fuzzPeer]}); got != want[i] {
			t.Errorf("seed %d: %+v, want %+v", i, got, want[i])
		}
	}
}
