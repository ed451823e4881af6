package bgp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/nos"
)

// rcvPath builds a received VPNv4 path.
type rcvPath struct {
	peer, rd, prefix, nexthop string
	label                     uint32
	rts                       []string
	tunnel                    bgp.TunnelType // 0: none
	localPref                 uint32         // 0: none
	peerAS                    uint32         // 0: ours (iBGP)
	withdraw                  bool
}

func (p rcvPath) build(t *testing.T) *apiutil.Path {
	t.Helper()
	r, err := bgp.ParseRouteDistinguisher(p.rd)
	if err != nil {
		t.Fatal(err)
	}
	nlri, _ := bgp.NewLabeledVPNIPAddrPrefix(netip.MustParsePrefix(p.prefix), *bgp.NewMPLSLabelStack(p.label), r)
	var attrs []bgp.PathAttributeInterface
	if p.nexthop != "" {
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv4_VPN, []bgp.PathNLRI{{NLRI: nlri}}, netip.MustParseAddr(p.nexthop))
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, mp)
	}
	var ecs []bgp.ExtendedCommunityInterface
	for _, s := range p.rts {
		ecs = append(ecs, mustRT(t, s).community())
	}
	if p.tunnel != 0 {
		ecs = append(ecs, bgp.NewEncapExtended(p.tunnel))
	}
	if len(ecs) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeExtendedCommunities(ecs))
	}
	if p.localPref != 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(p.localPref))
	}
	as := p.peerAS
	if as == 0 {
		as = testAS
	}
	return &apiutil.Path{Family: bgp.RF_IPv4_VPN, Nlri: nlri, Attrs: attrs, Withdrawal: p.withdraw,
		PeerAddress: netip.MustParseAddr(p.peer), PeerASN: as}
}

// testAS is the AS of the RIB under test.
const testAS = 65000

func withPeer(p *apiutil.Path, peer string) *apiutil.Path {
	p.PeerAddress = netip.MustParseAddr(peer)
	return p
}

func newTestRIB(t *testing.T) *rib {
	r := newRIB()
	r.setLocalAS(testAS)
	r.setEndpoint(netip.MustParseAddr("192.0.2.1"))
	r.setVRFs(map[string]vrfSpec{
		"red":  {name: "red", importRTs: []rt{mustRT(t, "65000:1")}, encap: nos.EncapMPLSoUDP},
		"blue": {name: "blue", importRTs: []rt{mustRT(t, "65000:2")}, encap: nos.EncapMPLSoMPLS},
	})
	return r
}

func fibOf(changes []nos.RouteChange) map[string][]nos.NextHop {
	out := map[string][]nos.NextHop{}
	for _, c := range changes {
		k := c.VRF + " " + c.Prefix.String()
		if c.Deleted {
			out[k] = nil
			continue
		}
		out[k] = c.NextHops
	}
	return out
}

func nh(ep string, label uint32, e nos.Encap) nos.NextHop {
	return nos.NextHop{Endpoint: netip.MustParseAddr(ep), Label: label, Encap: e}
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestRIBImport(t *testing.T) {
	r := newTestRIB(t)
	r.update([]*apiutil.Path{
		// Two hosts, different RDs: one ECMP set.
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}, tunnel: bgp.TUNNEL_TYPE_MPLS_IN_UDP}.build(t),
		rcvPath{peer: "10.0.0.3", rd: "10.0.0.3:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.3", label: 200, rts: []string{"65000:1"}}.build(t),
		// Same RD from two peers (multipath): also ECMP.
		rcvPath{peer: "10.0.0.2", rd: "65000:7", prefix: "10.8.0.0/24", nexthop: "192.0.2.2", label: 101, rts: []string{"65000:1", "65000:2"}}.build(t),
		rcvPath{peer: "10.0.0.3", rd: "65000:7", prefix: "10.8.0.0/24", nexthop: "192.0.2.3", label: 201, rts: []string{"65000:1", "65000:2"}}.build(t),
		// Worse local preference: not in the set.
		rcvPath{peer: "10.0.0.4", rd: "10.0.0.4:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.4", label: 300, rts: []string{"65000:1"}, localPref: 50}.build(t),
		// RT of no VRF.
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.7.0.0/24", nexthop: "192.0.2.2", label: 102, rts: []string{"65000:99"}}.build(t),
		// Points at us.
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.1:1", prefix: "10.1.0.5/32", nexthop: "192.0.2.1", label: 103, rts: []string{"65000:1"}}.build(t),
	})
	want := map[string][]nos.NextHop{
		"red 10.9.0.0/24":  {nh("192.0.2.2", 100, nos.EncapMPLSoUDP), nh("192.0.2.3", 200, nos.EncapMPLSoUDP)},
		"red 10.8.0.0/24":  {nh("192.0.2.2", 101, nos.EncapMPLSoUDP), nh("192.0.2.3", 201, nos.EncapMPLSoUDP)},
		"blue 10.8.0.0/24": {nh("192.0.2.2", 101, nos.EncapMPLSoMPLS), nh("192.0.2.3", 201, nos.EncapMPLSoMPLS)},
	}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("import (-want +got):\n%s", diff)
	}

	// One host withdraws: the set shrinks; the other: the route goes.
	r.update([]*apiutil.Path{rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.0.0/24", withdraw: true}.build(t)})
	want = map[string][]nos.NextHop{"red 10.9.0.0/24": {nh("192.0.2.3", 200, nos.EncapMPLSoUDP)}}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("after first withdrawal (-want +got):\n%s", diff)
	}
	r.update([]*apiutil.Path{rcvPath{peer: "10.0.0.3", rd: "10.0.0.3:1", prefix: "10.9.0.0/24", withdraw: true}.build(t)})
	want = map[string][]nos.NextHop{"red 10.9.0.0/24": {nh("192.0.2.4", 300, nos.EncapMPLSoUDP)}}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("after second withdrawal the worse path remains (-want +got):\n%s", diff)
	}

	// Blue stops importing 65000:2: its route goes, red's stays.
	r.setVRFs(map[string]vrfSpec{
		"red":  {name: "red", importRTs: []rt{mustRT(t, "65000:1")}, encap: nos.EncapMPLSoUDP},
		"blue": {name: "blue", importRTs: []rt{mustRT(t, "65000:3")}, encap: nos.EncapMPLSoMPLS},
	})
	got := fibOf(r.flush())
	if nhs, ok := got["blue 10.8.0.0/24"]; !ok || nhs != nil {
		t.Errorf("blue 10.8.0.0/24 not deleted after its import RT changed: %v", got)
	}
	if c := r.counters(); c.vrfRoutes["red"] != 2 || c.vrfRoutes["blue"] != 0 {
		t.Errorf("per-VRF counts %v", c.vrfRoutes)
	}
}

func TestRIBRejects(t *testing.T) {
	r := newTestRIB(t)
	bad := []rcvPath{
		{peer: "10.0.0.2", rd: "1:1", prefix: "10.9.1.0/24", nexthop: "192.0.2.2", label: 100},                                                          // no RT
		{peer: "10.0.0.2", rd: "1:2", prefix: "10.9.2.0/24", nexthop: "192.0.2.2", label: 0, rts: []string{"65000:1"}},                                  // label 0
		{peer: "10.0.0.2", rd: "1:3", prefix: "10.9.3.0/24", nexthop: "192.0.2.2", label: 3, rts: []string{"65000:1"}},                                  // reserved label
		{peer: "10.0.0.2", rd: "1:4", prefix: "10.9.4.0/24", nexthop: "0.0.0.0", label: 100, rts: []string{"65000:1"}},                                  // unspecified
		{peer: "10.0.0.2", rd: "1:5", prefix: "10.9.5.0/24", nexthop: "127.0.0.1", label: 100, rts: []string{"65000:1"}},                                // loopback
		{peer: "10.0.0.2", rd: "1:6", prefix: "10.9.6.0/24", nexthop: "224.0.0.5", label: 100, rts: []string{"65000:1"}},                                // multicast
		{peer: "10.0.0.2", rd: "1:7", prefix: "10.9.7.0/24", nexthop: "2001:db8::1", label: 100, rts: []string{"65000:1"}},                              // not IPv4
		{peer: "10.0.0.2", rd: "1:8", prefix: "10.9.8.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}, tunnel: bgp.TUNNEL_TYPE_VXLAN}, // VXLAN only
		{peer: "10.0.0.2", rd: "1:9", prefix: "10.9.9.0/24", label: 100, rts: []string{"65000:1"}},                                                      // no next hop
	}
	var paths []*apiutil.Path
	for _, b := range bad {
		paths = append(paths, b.build(t))
	}
	if n := r.update(paths); n != len(bad) {
		t.Errorf("rejected %d of %d bad paths", n, len(bad))
	}
	if got := r.flush(); len(got) != 0 {
		t.Errorf("bad paths reached the FIB: %v", got)
	}
	c := r.counters()
	want := map[string]int64{"no-route-target": 1, "bad-label": 2, "bad-next-hop": 5, "unsupported-encapsulation": 1}
	if diff := cmp.Diff(want, c.reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	if c.rejected[netip.MustParseAddr("10.0.0.2")] != int64(len(bad)) {
		t.Errorf("per-peer rejected %v", c.rejected)
	}

	// A good path that turns bad is removed.
	good := rcvPath{peer: "10.0.0.2", rd: "2:1", prefix: "10.10.0.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}}
	r.update([]*apiutil.Path{good.build(t)})
	if got := fibOf(r.flush()); len(got["red 10.10.0.0/24"]) != 1 {
		t.Fatalf("good path not imported: %v", got)
	}
	good.label = 0
	r.update([]*apiutil.Path{good.build(t)})
	if got := fibOf(r.flush()); got["red 10.10.0.0/24"] != nil {
		t.Errorf("path that turned bad still installed: %v", got)
	}
}

func TestRIBChurnBeforeFlush(t *testing.T) {
	r := newTestRIB(t)
	p := rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}}
	r.update([]*apiutil.Path{p.build(t)})
	r.flush()

	// Withdrawn and announced again before the flush: an update, no delete.
	w := p
	w.withdraw = true
	p.label = 101
	r.update([]*apiutil.Path{w.build(t), p.build(t)})
	got := r.flush()
	if len(got) != 1 || got[0].Deleted {
		t.Errorf("withdraw and re-announce: %v", got)
	}

	// The VRF goes: its route is deleted, and a new VRF importing the RT
	// gets it.
	r.setVRFs(map[string]vrfSpec{"green": {name: "green", importRTs: []rt{mustRT(t, "65000:1")}, encap: nos.EncapMPLSoUDP}})
	want := map[string][]nos.NextHop{"red 10.9.0.0/24": nil, "green 10.9.0.0/24": {nh("192.0.2.2", 101, nos.EncapMPLSoUDP)}}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("vrf replaced (-want +got):\n%s", diff)
	}
	if c := r.counters(); c.vrfRoutes["green"] != 1 || c.paths != 1 {
		t.Errorf("counters %v, %d paths", c.vrfRoutes, c.paths)
	}
	r.clearPaths()
	want = map[string][]nos.NextHop{"green 10.9.0.0/24": nil}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("cleared (-want +got):\n%s", diff)
	}
}

// TestRIBLocalPrefOnlyInsideTheAS: LOCAL_PREF from an eBGP peer is
// ignored (RFC 4271 5.1.5); from an iBGP peer it selects.
func TestRIBLocalPrefOnlyInsideTheAS(t *testing.T) {
	r := newTestRIB(t)
	r.update([]*apiutil.Path{
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}, localPref: 50, peerAS: 65099}.build(t),
		rcvPath{peer: "10.0.0.3", rd: "10.0.0.3:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.3", label: 200, rts: []string{"65000:1"}}.build(t),
		rcvPath{peer: "10.0.0.4", rd: "10.0.0.4:1", prefix: "10.8.0.0/24", nexthop: "192.0.2.4", label: 300, rts: []string{"65000:1"}, localPref: 50}.build(t),
		rcvPath{peer: "10.0.0.5", rd: "10.0.0.5:1", prefix: "10.8.0.0/24", nexthop: "192.0.2.5", label: 400, rts: []string{"65000:1"}, localPref: 200, peerAS: 65099}.build(t),
	})
	want := map[string][]nos.NextHop{
		"red 10.9.0.0/24": {nh("192.0.2.2", 100, nos.EncapMPLSoUDP), nh("192.0.2.3", 200, nos.EncapMPLSoUDP)},
		"red 10.8.0.0/24": {nh("192.0.2.5", 400, nos.EncapMPLSoUDP)},
	}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("eBGP LOCAL_PREF (-want +got):\n%s", diff)
	}
}

// TestRIBStalePaths: a peer whose session went down keeps its paths
// (graceful restart helper); what it announces again stays without a FIB
// change, what it does not announce before its End-of-RIB goes.
func TestRIBStalePaths(t *testing.T) {
	r := newTestRIB(t)
	keep := rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.0.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}}
	gone := rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.1.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}}
	changed := rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.2.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}}
	other := rcvPath{peer: "10.0.0.3", rd: "10.0.0.3:1", prefix: "10.9.1.0/24", nexthop: "192.0.2.3", label: 200, rts: []string{"65000:1"}}
	r.update([]*apiutil.Path{keep.build(t), gone.build(t), changed.build(t), other.build(t)})
	r.flush()

	r.markStale(netip.MustParseAddr("10.0.0.2"))
	r.markStale(netip.MustParseAddr("10.0.0.9")) // unknown peer: nothing
	if n := r.sweepStale(netip.MustParseAddr("10.0.0.3")); n != 0 {
		t.Errorf("sweep of a peer that never went down removed %d paths", n)
	}
	if got := r.flush(); len(got) != 0 {
		t.Errorf("marking paths stale changed the FIB: %v", got)
	}
	changed.label = 101
	r.update([]*apiutil.Path{keep.build(t), changed.build(t)})
	if n := r.sweepStale(netip.MustParseAddr("10.0.0.2")); n != 1 {
		t.Errorf("sweep removed %d paths, want 1", n)
	}
	want := map[string][]nos.NextHop{
		"red 10.9.1.0/24": {nh("192.0.2.3", 200, nos.EncapMPLSoUDP)},
		"red 10.9.2.0/24": {nh("192.0.2.2", 101, nos.EncapMPLSoUDP)},
	}
	if diff := cmp.Diff(want, fibOf(r.flush()), addrCmp); diff != "" {
		t.Errorf("after End-of-RIB (-want +got):\n%s", diff)
	}
	if n := r.sweepStale(netip.MustParseAddr("10.0.0.2")); n != 0 {
		t.Errorf("second sweep removed %d paths", n)
	}
	if c := r.counters(); c.paths != 3 || c.installed[netip.MustParseAddr("10.0.0.2")] != 2 {
		t.Errorf("counters after sweep: %d paths, installed %v", c.paths, c.installed)
	}

	// Stale paths withdrawn by GoBGP (restart time ran out) leave the count.
	r.markStale(netip.MustParseAddr("10.0.0.2"))
	keep.withdraw, changed.withdraw = true, true
	r.update([]*apiutil.Path{keep.build(t), changed.build(t)})
	if r.stale[r.peerIdx[netip.MustParseAddr("10.0.0.2")]] != 0 {
		t.Errorf("stale count after withdrawals: %v", r.stale)
	}
}

// TestRIBReceivedCounts: a peer's received count is every path it
// announces now, whatever import made of it (stored, rejected, pointing
// at us, imported nowhere); re-announcing changes nothing, withdrawing or
// sweeping a stale path takes it off.
func TestRIBReceivedCounts(t *testing.T) {
	const peer = "10.0.0.2"
	r := newTestRIB(t)
	count := func() (received, installed int64) {
		c := r.counters()
		return c.received[netip.MustParseAddr(peer)], c.installed[netip.MustParseAddr(peer)]
	}
	check := func(what string, received, installed int64) {
		t.Helper()
		if g1, g2 := count(); g1 != received || g2 != installed {
			t.Errorf("%s: received %d installed %d, want %d %d", what, g1, g2, received, installed)
		}
	}
	good := rcvPath{peer: peer, rd: "1:1", prefix: "10.9.1.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:1"}}
	bad := rcvPath{peer: peer, rd: "1:2", prefix: "10.9.2.0/24", nexthop: "192.0.2.2", label: 0, rts: []string{"65000:1"}}
	own := rcvPath{peer: peer, rd: "1:3", prefix: "10.9.3.0/24", nexthop: "192.0.2.1", label: 100, rts: []string{"65000:1"}}
	nowhere := rcvPath{peer: peer, rd: "1:4", prefix: "10.9.4.0/24", nexthop: "192.0.2.2", label: 100, rts: []string{"65000:99"}}
	all := []*apiutil.Path{good.build(t), bad.build(t), own.build(t), nowhere.build(t)}
	r.update(all)
	check("first announcement", 4, 1)
	r.update(all)
	check("announced again", 4, 1)

	fixed := bad
	fixed.label = 101
	r.update([]*apiutil.Path{fixed.build(t)})
	check("the bad path fixed", 4, 2)
	r.update([]*apiutil.Path{bad.build(t)})
	check("and broken again", 4, 1)

	r.setEndpoint(netip.MustParseAddr("192.0.2.2")) // good and nowhere now point at us
	check("our endpoint moved", 4, 0)
	r.setEndpoint(netip.MustParseAddr("192.0.2.1"))

	r.markStale(netip.MustParseAddr(peer))
	r.update([]*apiutil.Path{bad.build(t)})
	r.sweepStale(netip.MustParseAddr(peer))
	check("after a restart only the bad path was announced again", 1, 0)

	w := bad
	w.withdraw = true
	r.update([]*apiutil.Path{w.build(t)})
	check("all withdrawn", 0, 0)
}
