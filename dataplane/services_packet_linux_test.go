package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

var (
	vipAddr   = netip.MustParseAddr("10.96.0.10")
	dcClient  = netip.MustParseAddr("10.9.0.7")
	loMAC     = mustMAC("00:00:00:00:00:00")
	tcpSYN    = uint8(0x02)
	tcpSYNACK = uint8(0x12)
)

// l4sum is the TCP/UDP checksum of seg between src and dst.
func l4sum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	pseudo := cat(s[:], d[:], []byte{0, proto}, binary.BigEndian.AppendUint16(nil, uint16(len(seg))))
	return csum(cat(pseudo, seg))
}

// tcpPkt is an IPv4 TCP segment with valid checksums.
func tcpPkt(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8, ttl uint8, payload []byte) []byte {
	seg := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint32(seg[4:], 1000)
	seg[12] = 5 << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535)
	seg = append(seg, payload...)
	binary.BigEndian.PutUint16(seg[16:], l4sum(src, dst, 6, seg))
	return ip4{src: src, dst: dst, proto: 6, ttl: ttl, id: 11}.packet(seg)
}

// udpPkt is an IPv4 UDP datagram with a valid checksum (or none).
func udpPkt(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, ttl uint8, payload []byte, withSum bool) []byte {
	seg := udp(sport, dport, payload)
	if withSum {
		binary.BigEndian.PutUint16(seg[6:], l4sum(src, dst, 17, seg))
	}
	return ip4{src: src, dst: dst, proto: 17, ttl: ttl, id: 12}.packet(seg)
}

// icmpUnreachable is a port-unreachable error from src about quoted.
func icmpUnreachable(src, dst netip.Addr, ttl uint8, quoted []byte) []byte {
	msg := cat([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quoted)
	binary.BigEndian.PutUint16(msg[2:], csum(msg))
	return ip4{src: src, dst: dst, proto: 1, ttl: ttl, id: 13}.packet(msg)
}

// runFrom runs pod_ingress as if the frame came in on ifindex.
func runFrom(t testing.TB, p *ebpf.Program, ifindex int, in []byte) (uint32, []byte) {
	t.Helper()
	var ctx [12]uint32 // struct __sk_buff up to ifindex
	ctx[10] = uint32(ifindex)
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256), Context: ctx}
	ret, err := p.Run(opts)
	if err != nil {
		t.Fatalf("run %v: %v", p, err)
	}
	return ret, opts.DataOut
}

// serviceEnv is packetEnv plus a route to pod1 (lo) and service web: TCP
// 10.96.0.10:80 with the given backends.
func serviceEnv(t *testing.T, backends ...Backend) *packetEnv {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: backends}}))
	return e
}

var webKey = ServiceKey{VRF: "red", Addr: vipAddr, Proto: TCP, Port: 80}

func backend(a netip.Addr, port uint16, local bool) Backend {
	return Backend{BackendKey: BackendKey{Addr: a, Port: port}, Ready: true, Serving: true, Local: local}
}

// TestServiceLocalExact: a pod's SYN to the service is translated to the
// backend on this host (address, port, IPv4 and TCP checksums) and the
// backend's SYN-ACK is translated back to the service on its way to the
// client.
func TestServiceLocalExact(t *testing.T) {
	e := serviceEnv(t, backend(pod2Addr, 8080, true))
	syn := tcpPkt(pod1Addr, 40000, vipAddr, 80, tcpSYN, 64, nil)
	ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, syn))
	if ret != tcRedirect {
		t.Fatalf("syn: return %d, want redirect", ret)
	}
	assertBytes(t, "syn to the backend", out, eth(pod2PeerMAC, pod2MAC, 0x0800, tcpPkt(pod1Addr, 40000, pod2Addr, 8080, tcpSYN, 63, nil)))

	synack := tcpPkt(pod2Addr, 8080, pod1Addr, 40000, tcpSYNACK, 64, []byte("hi"))
	ret, out = runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, synack))
	if ret != tcRedirect {
		t.Fatalf("syn-ack: return %d, want redirect", ret)
	}
	assertBytes(t, "syn-ack to the client", out, eth(pod1PeerMAC, loMAC, 0x0800, tcpPkt(vipAddr, 80, pod1Addr, 40000, tcpSYNACK, 63, []byte("hi"))))

	fc, err := e.d.FlowCounters()
	must(t, err)
	if fc.Created != 1 {
		t.Errorf("flows created %d, want 1", fc.Created)
	}
	total, per, err := e.d.ServiceStats(webKey)
	must(t, err)
	if total.Packets != 2 || total.Flows != 1 || per[BackendKey{pod2Addr, 8080}].Packets != 2 {
		t.Errorf("service counters %+v, backend %+v; want 2 packets, 1 flow", total, per)
	}
	flows, err := e.d.ServiceFlows(webKey, 0)
	must(t, err)
	if len(flows) != 1 || flows[0].Client != netip.AddrPortFrom(pod1Addr, 40000) ||
		flows[0].Backend != netip.AddrPortFrom(pod2Addr, 8080) || flows[0].State != FlowEstablished {
		t.Errorf("flows %+v, want one established flow 10.1.0.2:40000 → 10.1.0.3:8080", flows)
	}
}

// TestServiceRemoteBackendExact: a UDP datagram to the service is
// translated to a backend on another host and encapsulated; the reply
// arrives over the tunnel and is translated back before delivery. A zero
// UDP checksum stays zero.
func TestServiceRemoteBackendExact(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	dns := ServiceKey{VRF: "red", Addr: vipAddr, Proto: UDP, Port: 53}
	must(t, e.d.SetServices([]Service{{ServiceKey: dns, Backends: []Backend{backend(farAddr, 5353, false)}}}))
	for _, withSum := range []bool{true, false} {
		q := udpPkt(pod1Addr, 40000, vipAddr, 53, 64, []byte("query"), withSum)
		ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, q))
		if ret != tcRedirect {
			t.Fatalf("query: return %d, want redirect", ret)
		}
		inner := udpPkt(pod1Addr, 40000, farAddr, 5353, 64, []byte("query"), withSum)
		sport := uint16(49152 | flowHash(inner)&0x3fff)
		outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
			packet(udp(sport, 6635, cat(lse(100, true, 63), withTTL(inner, 63))))
		assertBytes(t, "encapsulated query", out, eth(peer2MAC, underlayMAC, 0x0800, outer))

		reply := udpPkt(farAddr, 5353, pod1Addr, 40000, 63, []byte("answer"), withSum)
		ret, out = run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), reply))
		if ret != tcRedirect {
			t.Fatalf("reply: return %d, want redirect", ret)
		}
		want := udpPkt(vipAddr, 53, pod1Addr, 40000, 62, []byte("answer"), withSum)
		assertBytes(t, "delivered reply", out, eth(pod1PeerMAC, loMAC, 0x0800, want))
	}
}

// TestServiceFromTunnelLocalOnly: a client in the data center reaches the
// service over the tunnel; the host translates to a local backend only,
// and the backend's reply is translated back and encapsulated toward the
// client's host.
func TestServiceFromTunnelLocalOnly(t *testing.T) {
	e := serviceEnv(t, backend(pod2Addr, 8080, true), backend(farAddr, 8080, false))
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.9.0.0/24")},
		NextHops: []NextHop{{Endpoint: remote2, Label: 100, Encap: EncapMPLSoUDP}}}}))
	for sport := uint16(41000); sport < 41050; sport++ {
		syn := tcpPkt(dcClient, sport, vipAddr, 80, tcpSYN, 63, nil)
		ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), syn))
		if ret != tcRedirect {
			t.Fatalf("syn from port %d: return %d, want redirect", sport, ret)
		}
		assertBytes(t, "syn to the local backend", out, eth(pod2PeerMAC, pod2MAC, 0x0800, tcpPkt(dcClient, sport, pod2Addr, 8080, tcpSYN, 62, nil)))
	}
	synack := tcpPkt(pod2Addr, 8080, dcClient, 41000, tcpSYNACK, 64, nil)
	ret, out := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, synack))
	if ret != tcRedirect {
		t.Fatalf("syn-ack: return %d, want redirect", ret)
	}
	inner := tcpPkt(vipAddr, 80, dcClient, 41000, tcpSYNACK, 64, nil)
	sport := uint16(49152 | flowHash(inner)&0x3fff)
	outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
		packet(udp(sport, 6635, cat(lse(100, true, 63), withTTL(inner, 63))))
	assertBytes(t, "encapsulated syn-ack", out, eth(peer2MAC, underlayMAC, 0x0800, outer))

	// Without a local backend, tunnel traffic to the service is dropped.
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{backend(farAddr, 8080, false)}}}))
	syn := tcpPkt(dcClient, 42000, vipAddr, 80, tcpSYN, 63, nil)
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), syn)); ret != tcShot {
		t.Errorf("syn without a local backend: return %d, want drop", ret)
	}
}

// TestServiceICMPErrorExact: a backend's port unreachable about a
// translated datagram reaches the client from the service, quoting the
// datagram the client sent (to the service), with every checksum right.
func TestServiceICMPErrorExact(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	dns := ServiceKey{VRF: "red", Addr: vipAddr, Proto: UDP, Port: 53}
	must(t, e.d.SetServices([]Service{{ServiceKey: dns, Backends: []Backend{backend(pod2Addr, 5353, true)}}}))
	q := udpPkt(pod1Addr, 40000, vipAddr, 53, 64, []byte("query"), true)
	if ret, _ := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, q)); ret != tcRedirect {
		t.Fatalf("query: return %d, want redirect", ret)
	}
	seen := udpPkt(pod1Addr, 40000, pod2Addr, 5353, 63, []byte("query"), true) // as the backend got it
	errPkt := icmpUnreachable(pod2Addr, pod1Addr, 64, seen)
	ret, out := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, errPkt))
	if ret != tcRedirect {
		t.Fatalf("icmp error: return %d, want redirect", ret)
	}
	quoted := udpPkt(pod1Addr, 40000, vipAddr, 53, 63, []byte("query"), true)
	assertBytes(t, "translated icmp error", out, eth(pod1PeerMAC, loMAC, 0x0800, icmpUnreachable(vipAddr, pod1Addr, 63, quoted)))
}

// TestServiceICMPErrorOverTunnelExact: the error comes from a backend on
// another host, over the tunnel, and is translated before delivery.
func TestServiceICMPErrorOverTunnelExact(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	dns := ServiceKey{VRF: "red", Addr: vipAddr, Proto: UDP, Port: 53}
	must(t, e.d.SetServices([]Service{{ServiceKey: dns, Backends: []Backend{backend(farAddr, 5353, false)}}}))
	q := udpPkt(pod1Addr, 40000, vipAddr, 53, 64, []byte("query"), true)
	if ret, _ := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, q)); ret != tcRedirect {
		t.Fatalf("query: return %d, want redirect", ret)
	}
	seen := udpPkt(pod1Addr, 40000, farAddr, 5353, 62, []byte("query"), true)
	errPkt := icmpUnreachable(farAddr, pod1Addr, 63, seen)
	ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), errPkt))
	if ret != tcRedirect {
		t.Fatalf("icmp error: return %d, want redirect", ret)
	}
	quoted := udpPkt(pod1Addr, 40000, vipAddr, 53, 62, []byte("query"), true)
	assertBytes(t, "translated icmp error", out, eth(pod1PeerMAC, loMAC, 0x0800, icmpUnreachable(vipAddr, pod1Addr, 62, quoted)))
}
