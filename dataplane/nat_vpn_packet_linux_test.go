package dataplane

import (
	"net/netip"
	"testing"
)

// TestFloatingVPNExact: floating IP 198.51.100.5 of red's pod1, advertised
// in the external VRF public (label 2000; 10.8.0.0/24 in the data center
// via 192.0.2.2 label 500). A packet arriving with public's label for the
// floating IP reaches pod1 with its destination translated; pod1's reply
// to the data center (no route in red) leaves from the floating IP over
// public's route, encapsulated; every checksum exact. After the binding
// moves to pod2 the label leads to pod2, and once the floating IP is
// unbound it leads nowhere. The floating IP is reached through public
// only: unencapsulated it is not a way in, and pod1's packets to
// destinations public does not route do not leave from it.
func TestFloatingVPNExact(t *testing.T) {
	e := natEnv(t)
	fip := netip.MustParseAddr("198.51.100.5")
	dc := netip.MustParseAddr("10.8.0.5")
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "public", Prefix: netip.MustParsePrefix("10.8.0.0/24")},
		NextHops: []NextHop{{Endpoint: remote2, Label: 500, Encap: EncapMPLSoUDP}}}}))
	must(t, e.d.SetLabel(2000, LabelTarget{VRF: "public"}))
	must(t, e.d.AllowEndpoint(remote2, "public"))
	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod1Addr, Ext: "public"}}))

	in := tcpPkt(dc, 40000, fip, 80, tcpSYN, 63, []byte("hi"))
	ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), in))
	if ret != tcRedirect {
		t.Fatalf("to the floating ip with public's label: return %d, want redirect", ret)
	}
	assertBytes(t, "to pod1", out, eth(pod1PeerMAC, loMAC, 0x0800, tcpPkt(dc, 40000, pod1Addr, 80, tcpSYN, 62, []byte("hi"))))

	reply := tcpPkt(pod1Addr, 80, dc, 40000, tcpSYNACK, 64, []byte("ho"))
	ret, out = run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, reply))
	if ret != tcRedirect {
		t.Fatalf("reply from pod1: return %d, want redirect", ret)
	}
	translated := tcpPkt(fip, 80, dc, 40000, tcpSYNACK, 63, []byte("ho"))
	sport := uint16(49152 | flowHash(translated)&0x3fff)
	outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
		packet(udp(sport, 6635, cat(lse(500, true, 63), translated)))
	assertBytes(t, "reply over public's route", out, eth(peer2MAC, underlayMAC, 0x0800, outer))

	// To a destination public does not route, pod1 does not leave from
	// the floating IP through the underlay (red has no SNAT: dropped).
	if ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 80, inetAddr, 443, tcpSYN, 64, nil))); ret != tcShot {
		t.Errorf("pod1 to %s outside public's routes: return %d (%x), want a drop", inetAddr, ret, out)
	}
	// Unencapsulated, a VPNv4 floating IP is not a way in.
	if ret, _ := run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, in)); ret == tcRedirect {
		t.Errorf("an unencapsulated packet to a VPNv4 floating ip reached the pod")
	}

	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod2Addr, Ext: "public"}}))
	ret, out = run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), in))
	if ret != tcRedirect {
		t.Fatalf("after the move: return %d, want redirect", ret)
	}
	assertBytes(t, "to pod2 after the move", out, eth(pod2PeerMAC, pod2MAC, 0x0800, tcpPkt(dc, 40000, pod2Addr, 80, tcpSYN, 62, []byte("hi"))))
	if ret, _ := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, reply)); ret == tcRedirect {
		t.Errorf("pod1 still reaches public after its binding moved")
	}

	must(t, e.d.SetFloating(nil))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), in)); ret != tcShot {
		t.Errorf("unbound floating ip with public's label: return %d, want a drop", ret)
	}
}
