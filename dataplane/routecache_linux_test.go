package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestRouteCacheFollowsChanges checks that a route lookup cached by the
// forwarder never outlives a change to the route tables: the next packet
// after SetRoutes or DeleteRoutes takes the new route.
func TestRouteCacheFollowsChanges(t *testing.T) {
	e := newPacketEnv(t)
	frame, _ := podFrame(farAddr, 40000, 64, nil)
	label := func() uint32 {
		t.Helper()
		ret, out := run(t, e.d.progs.PodIngress, frame)
		if ret != tcRedirect {
			t.Fatalf("return %d, want redirect", ret)
		}
		return binary.BigEndian.Uint32(out[14+20+8:]) >> 12 // MPLSoUDP: the VPN label
	}
	for range 2 { // the second packet is answered by the cache
		if l := label(); l != 100 {
			t.Fatalf("label %d, want 100", l)
		}
	}
	key := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.0/24")}
	must(t, e.d.SetRoutes([]Route{{RouteKey: key, NextHops: []NextHop{{Endpoint: remote2, Label: 101, Encap: EncapMPLSoUDP}}}}))
	if l := label(); l != 101 {
		t.Fatalf("after SetRoutes: label %d, want 101", l)
	}
	// A more specific route wins at once.
	host := RouteKey{VRF: "red", Prefix: netip.PrefixFrom(farAddr, 32)}
	must(t, e.d.SetRoutes([]Route{{RouteKey: host, NextHops: []NextHop{{Endpoint: remote2, Label: 102, Encap: EncapMPLSoUDP}}}}))
	if l := label(); l != 102 {
		t.Fatalf("after adding a /32: label %d, want 102", l)
	}
	must(t, e.d.DeleteRoutes([]RouteKey{host, key}))
	if ret, _ := run(t, e.d.progs.PodIngress, frame); ret != tcShot {
		t.Fatalf("after DeleteRoutes: return %d, want drop", ret)
	}
}
