package dataplane

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// TestServiceExternalAllRelayExact: with external traffic to every
// backend, a client in the data center (its packets come from endpoint
// 192.0.2.3, which does not advertise the service) reaches a local backend
// (translated here) or the backend on 192.0.2.2's host: that packet is
// carried on untranslated, its outer header rewritten in place toward
// 192.0.2.2 with the label 192.0.2.2 advertised for the service (inner TTL
// and checksum decremented, source port from the inner flow), and so are
// the flow's later packets. The same packets from 192.0.2.2, which serves
// the service, never go back out; without a route to the service through
// the backend's host, its flows take the local backend.
func TestServiceExternalAllRelayExact(t *testing.T) {
	e := serviceEnv(t)
	vipRoute := Route{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(vipAddr, 32)},
		NextHops: []NextHop{{Endpoint: remote2, Label: 555, Encap: EncapMPLSoUDP}}}
	must(t, e.d.SetRoutes([]Route{vipRoute}))
	svc := Service{ServiceKey: webKey, ExternalAll: true, Backends: []Backend{backend(pod2Addr, 8080, true), backend(farAddr, 8080, false)}}
	must(t, e.d.SetServices([]Service{svc}))

	relayed := func(inner []byte, ttl uint8) []byte {
		sport := uint16(49152 | flowHash(inner)&0x3fff)
		outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
			packet(udp(sport, 6635, cat(lse(555, true, ttl), withTTL(inner, ttl))))
		return eth(peer2MAC, underlayMAC, 0x0800, outer)
	}
	local, relay := 0, 0
	var relayPort uint16
	const n = 200
	for sport := uint16(41000); sport < 41000+n; sport++ {
		syn := tcpPkt(dcClient, sport, vipAddr, 80, tcpSYN, 63, nil)
		ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote3, 6635, lse(1000, true, 63), syn))
		if ret != tcRedirect {
			t.Fatalf("syn from port %d: return %d, want redirect", sport, ret)
		}
		if bytes.Equal(out[:6], pod2PeerMAC) {
			local++
			assertBytes(t, "syn to the local backend", out, eth(pod2PeerMAC, pod2MAC, 0x0800, tcpPkt(dcClient, sport, pod2Addr, 8080, tcpSYN, 62, nil)))
			continue
		}
		relay++
		relayPort = sport
		assertBytes(t, "syn carried on to the backend's host", out, relayed(syn, 62))
	}
	t.Logf("%d translated here, %d carried on", local, relay)
	if local < n/4 || relay < n/4 {
		t.Errorf("%d flows translated here, %d carried on; want both about half of %d", local, relay, n)
	}
	// A later packet of a carried flow follows it, whatever the table says.
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, ExternalAll: true, Backends: append(svc.Backends, backend(netip.MustParseAddr("10.1.0.9"), 8080, true))}}))
	ack := tcpPkt(dcClient, relayPort, vipAddr, 80, 0x10, 63, []byte("data"))
	if ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote3, 6635, lse(1000, true, 63), ack)); ret != tcRedirect {
		t.Fatalf("ack of a carried flow: return %d, want redirect", ret)
	} else {
		assertBytes(t, "ack carried on", out, relayed(ack, 62))
	}
	flows, err := e.d.ServiceFlows(webKey, 0)
	must(t, err)
	carried := 0
	for _, f := range flows {
		if f.Backend == netip.AddrPortFrom(farAddr, 8080) {
			carried++
		}
	}
	if carried != relay {
		t.Errorf("%d flows listed with the far backend, want the %d carried on", carried, relay)
	}
	// The collector keeps them (each is a whole pair, answered), until
	// they are idle past the established timeout.
	gc, err := e.d.collectFlowsAt(FlowTimeouts{}, monotonicNow()+uint64(30*time.Second))
	must(t, err)
	if gc.Evicted != 0 || gc.Expired != 0 {
		t.Errorf("30 s later the collector removed %+v, want nothing", gc)
	}
	if flows, err = e.d.ServiceFlows(webKey, 0); err != nil || len(flows) != n {
		t.Errorf("30 s later %d flows (%v), want %d", len(flows), err, n)
	}
	_, per, err := e.d.ServiceStats(webKey)
	must(t, err)
	if c := per[BackendKey{farAddr, 8080}]; c.Flows != uint64(relay) || c.Packets != uint64(relay+1) {
		t.Errorf("far backend counters %+v, want %d flows and %d packets", c, relay, relay+1)
	}

	// From a host that serves the service: local backends only.
	must(t, e.d.SetServices([]Service{svc}))
	for sport := uint16(43000); sport < 43000+n/4; sport++ {
		syn := tcpPkt(dcClient, sport, vipAddr, 80, tcpSYN, 63, nil)
		ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), syn))
		if ret != tcRedirect || !bytes.Equal(out[:6], pod2PeerMAC) {
			t.Fatalf("syn from port %d of a serving host: return %d, sent to %x; want the local backend", sport, ret, out[:6])
		}
	}
	// No route to the service through the far backend's host: local.
	must(t, e.d.DeleteRoutes([]RouteKey{vipRoute.RouteKey}))
	for sport := uint16(44000); sport < 44000+n/4; sport++ {
		syn := tcpPkt(dcClient, sport, vipAddr, 80, tcpSYN, 63, nil)
		ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote3, 6635, lse(1000, true, 63), syn))
		if ret != tcRedirect || !bytes.Equal(out[:6], pod2PeerMAC) {
			t.Fatalf("syn from port %d without a route to the service: return %d, sent to %x; want the local backend", sport, ret, out[:6])
		}
	}
}
