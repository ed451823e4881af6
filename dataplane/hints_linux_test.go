package dataplane

import (
	"net/netip"
	"testing"
)

// TestEndpointHints checks that endpoints land in the direct-mapped hints
// the decapsulating programs read first, and that two endpoints sharing a
// hint entry are both accepted (one through the hash map) until deleted.
func TestEndpointHints(t *testing.T) {
	e := newPacketEnv(t)
	d := e.d
	hintOf := func(addr netip.Addr) forwarderEndpointHint {
		k := be32(addr.As4())
		var h forwarderEndpointHint
		must(t, d.maps.AddrHints.Lookup(endpointHash(k, 0), &h))
		return h
	}
	if h := hintOf(remote2); h.Key != be32(remote2.As4()) || h.Slot != d.epSlots[remote2] {
		t.Fatalf("hint of %v = %+v, want slot %d", remote2, h, d.epSlots[remote2])
	}
	k, k2 := macKeys([6]byte(peer3MAC))
	var mh forwarderEndpointHint
	must(t, d.maps.MacHints.Lookup(endpointHash(k, k2), &mh))
	if mh.Key != k || mh.Key2 != k2 || mh.Slot != d.epSlots[remote3] {
		t.Fatalf("hint of %v = %+v, want slot %d", peer3MAC, mh, d.epSlots[remote3])
	}

	// An address whose hint entry is remote2's.
	var other netip.Addr
	want := endpointHash(be32(remote2.As4()), 0)
	for i := 1; i < 1<<16 && !other.IsValid(); i++ {
		a := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		if endpointHash(be32(a.As4()), 0) == want {
			other = a
		}
	}
	if !other.IsValid() {
		t.Fatal("no colliding address found")
	}
	frame := func(src netip.Addr) []byte {
		return underlayFrame(src, 6635, lse(1001, true, 63), remoteInner(pod2Addr, 63))
	}
	expect := func(src netip.Addr, want uint32) {
		t.Helper()
		if ret, _ := run(t, d.progs.UnderlayIngress, frame(src)); ret != want {
			t.Errorf("packet from %v: return %d, want %d", src, ret, want)
		}
	}
	must(t, d.SetEndpoint(Endpoint{Addr: other, MAC: peer2MAC}))
	must(t, d.AllowEndpoint(other, "red"))
	if h := hintOf(other); h.Slot != d.epSlots[other] {
		t.Fatalf("hint after adding %v = %+v, want its slot %d", other, h, d.epSlots[other])
	}
	expect(other, tcRedirect)
	expect(remote2, tcRedirect) // through endpoint_index
	must(t, d.DeleteEndpoint(other))
	if h := hintOf(other); h.Slot != 0 {
		t.Fatalf("hint after deleting %v = %+v, want empty", other, h)
	}
	expect(other, tcShot)
	expect(remote2, tcRedirect)
	must(t, d.DeleteEndpoint(remote2))
	expect(remote2, tcShot)
}
