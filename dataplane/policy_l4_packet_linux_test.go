package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// icmpError is an ICMP error of type typ and code from src to dst
// quoting quoted (its IPv4 header and first 8 bytes).
func icmpError(src, dst netip.Addr, typ, code uint8, quoted []byte) []byte {
	msg := cat([]byte{typ, code, 0, 0, 0, 0, 0x05, 0x78}, quoted[:28]) // next-hop MTU 1400
	binary.BigEndian.PutUint16(msg[2:], csum(msg))
	return ip4{src: src, dst: dst, proto: 1, ttl: 64, id: 21}.packet(msg)
}

// TestPolicyShortL4Header: a packet whose TCP or UDP ports cannot be
// read (the L4 header cut short, or an IPv4 header claiming more than
// the frame holds) is dropped as malformed at an isolated point instead
// of passing unjudged; a first fragment is judged on its ports (a port
// rule that drops cannot be evaded by setting more-fragments), a
// fragment after the first whose first was not seen without them (only
// rules without ports decide it).
func TestPolicyShortL4Header(t *testing.T) {
	e := newPacketEnv(t)
	accept80 := []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "web/10"}}
	set := func(rules []PolicyRule, def PolicyAction) {
		t.Helper()
		must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Rules: rules, Default: def}}}}))
	}
	set(accept80, 0)
	syn := tcpPkt(pod1Addr, 43000, pod2Addr, 80, tcpSYN, 64, nil)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(syn)); ret != tcRedirect {
		t.Fatalf("whole syn to port 80: return %d, want redirect", ret)
	}
	udpFirst := udpPkt(pod1Addr, 43001, pod2Addr, 53, 64, []byte("query..."), true)
	udpFirst[6] = 0x20 // more fragments, offset 0
	binary.BigEndian.PutUint16(udpFirst[10:], 0)
	binary.BigEndian.PutUint16(udpFirst[10:], csum(udpFirst[:20]))
	// Of another datagram than udpFirst's (id 12): a later fragment of
	// the same datagram takes its first's ports (TestPolicyFragmentsFollowFirst).
	later := ip4{src: pod1Addr, dst: pod2Addr, proto: 17, ttl: 64, id: 14, flags: 0x0002}.packet([]byte("rest of a datagram"))
	cases := []struct {
		name  string
		rules []PolicyRule
		def   PolicyAction
		pkt   []byte
		pass  bool
	}{
		// The IPv4 header says 40 bytes; the frame holds 2 of TCP.
		{"tcp header cut to 2 bytes", accept80, 0, tcpPkt(pod1Addr, 43002, pod2Addr, 80, tcpSYN, 64, nil)[:22], false},
		{"tcp header cut to 12 bytes", accept80, 0, tcpPkt(pod1Addr, 43003, pod2Addr, 80, tcpSYN, 64, nil)[:32], false},
		{"tcp without a header", []PolicyRule{{Protocol: 6, Action: PolicyAccept}}, 0,
			ip4{src: pod1Addr, dst: pod2Addr, proto: 6, ttl: 64}.packet(nil), false},
		{"udp header cut to 3 bytes", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept}}, 0,
			udpPkt(pod1Addr, 43004, pod2Addr, 53, 64, nil, false)[:23], false},
		{"first fragment on its ports", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyDrop}, {Action: PolicyAccept}}, 0,
			udpFirst, false},
		{"later fragment without ports", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept}}, 0, later, false},
		{"later fragment, a rule without ports", []PolicyRule{{Protocol: 17, Action: PolicyAccept}}, 0, later, true},
	}
	before, err := e.d.Drops("red")
	must(t, err)
	for _, c := range cases {
		set(c.rules, c.def)
		ret, _ := run(t, e.d.progs.PodIngress, fromPod1(c.pkt))
		if pass := ret == tcRedirect; pass != c.pass {
			t.Errorf("%s: return %d, want pass=%v", c.name, ret, c.pass)
		}
	}
	after, err := e.d.Drops("red")
	must(t, err)
	if got := after.Malformed - before.Malformed; got != 4 {
		t.Errorf("malformed drops %d, want 4 (the short headers)", got)
	}
	// Without an attachment on either pod nothing is judged: a short
	// packet is forwarded as before.
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{}}))
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 43005, pod2Addr, 80, tcpSYN, 64, nil)[:22])); ret != tcRedirect {
		t.Errorf("short packet without policy: return %d, want redirect", ret)
	}
}

// TestPolicyRelatedICMPFromPod: an ICMP error a pod isolated for egress
// sends about a flow its ingress allowed (fragmentation needed, toward
// the tunnel) passes as related to the flow, exactly encapsulated; one
// about a flow never allowed, or addressed to anyone but the quoted
// packet's source, is judged as a new flow and dropped.
func TestPolicyRelatedICMPFromPod(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {
		Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "in/1"}}},
		Egress:  &Attachment{},
	}}}))
	syn := tcpPkt(farAddr, 44000, pod2Addr, 80, tcpSYN, 63, []byte("0123456789"))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), syn)); ret != tcRedirect {
		t.Fatalf("allowed syn from the tunnel: return %d, want redirect", ret)
	}
	fromPod2 := func(pkt []byte) (uint32, []byte) {
		return runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, pkt))
	}
	related := icmpError(pod2Addr, farAddr, 3, 4, syn)
	ret, out := fromPod2(related)
	if ret != tcRedirect {
		t.Fatalf("fragmentation needed about the allowed flow: return %d, want redirect", ret)
	}
	portless := append([]byte(nil), related...)
	copy(portless[20:24], make([]byte, 4)) // ICMP is hashed without ports
	hash := flowHash(portless)
	want := eth(peer2MAC, underlayMAC, 0x0800, ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
		packet(udp(uint16(49152|hash&0x3fff), 6635, cat(lse(100, true, 63), withTTL(related, 63)))))
	assertBytes(t, "related error toward the tunnel", out, want)
	if ret, _ := fromPod2(icmpError(pod2Addr, farAddr, 11, 0, syn)); ret != tcRedirect {
		t.Errorf("time exceeded about the allowed flow: return %d, want redirect", ret)
	}

	other := tcpPkt(farAddr, 44001, pod2Addr, 81, tcpSYN, 63, nil)
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), other)); ret != tcShot {
		t.Fatalf("syn to a port pod2 does not allow: return %d, want drop", ret)
	}
	if ret, _ := fromPod2(icmpError(pod2Addr, farAddr, 3, 4, other)); ret != tcShot {
		t.Errorf("error about a refused flow: return %d, want drop", ret)
	}
	never := tcpPkt(farAddr, 44002, pod2Addr, 80, tcpSYN, 63, nil)
	if ret, _ := fromPod2(icmpError(pod2Addr, farAddr, 3, 4, never)); ret != tcShot {
		t.Errorf("error about a flow that never was: return %d, want drop", ret)
	}
	if ret, _ := fromPod2(icmpError(pod2Addr, netip.MustParseAddr("10.2.0.9"), 3, 4, syn)); ret != tcShot {
		t.Errorf("error about the allowed flow sent elsewhere: return %d, want drop", ret)
	}
	// A policy change that refuses the flow refuses its errors too.
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{}, Egress: &Attachment{}}}}))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), syn)); ret != tcShot {
		t.Fatalf("syn after the flow was refused: return %d, want drop", ret)
	}
	if ret, _ := fromPod2(related); ret != tcShot {
		t.Errorf("error about a flow refused since: return %d, want drop", ret)
	}
}

// TestPolicyRelatedICMPFromTunnel: ICMP errors from the tunnel toward a
// pod isolated for ingress (fragmentation needed from a router on the
// way, port unreachable from the peer) about a flow the pod opened pass
// as related, delivered exactly; one about another flow is dropped.
func TestPolicyRelatedICMPFromTunnel(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Ingress: &Attachment{}}}}))
	frame, inner := podFrame(farAddr, 45000, 64, []byte("a datagram too big"))
	if ret, _ := run(t, e.d.progs.PodIngress, frame); ret != tcRedirect {
		t.Fatalf("udp from pod1 toward the tunnel: return %d, want redirect", ret)
	}
	sent := withTTL(inner, 63) // as it left this host
	router := netip.MustParseAddr("10.2.0.1")
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"fragmentation needed from a router", icmpError(router, pod1Addr, 3, 4, sent)},
		{"port unreachable from the peer", icmpError(farAddr, pod1Addr, 3, 3, sent)},
	} {
		ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), c.pkt))
		if ret != tcRedirect {
			t.Errorf("%s: return %d, want redirect", c.name, ret)
			continue
		}
		want := eth(pod1PeerMAC, loMAC, 0x0800, withTTL(c.pkt, 63))
		assertBytes(t, c.name, out, want)
	}
	_, other := podFrame(farAddr, 45001, 64, nil) // never sent
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), icmpError(router, pod1Addr, 3, 4, withTTL(other, 63)))); ret != tcShot {
		t.Errorf("error about a flow pod1 never opened: return %d, want drop", ret)
	}
	// An echo request pod1 sent: the time exceeded about it is related.
	echo := icmpEcho(pod1Addr, farAddr, 8, 77, 1, 64)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(echo)); ret != tcRedirect {
		t.Fatalf("echo from pod1: return %d, want redirect", ret)
	}
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), icmpError(router, pod1Addr, 11, 0, withTTL(echo, 63)))); ret != tcRedirect {
		t.Errorf("time exceeded about pod1's echo: return %d, want redirect", ret)
	}
}

// TestPolicyShortL4HeaderFromTunnel: after decapsulation too, a TCP
// header cut short (the inner IPv4 header says 40 bytes, 22 arrive) is
// dropped as malformed by pod2's isolated ingress, not delivered.
func TestPolicyShortL4HeaderFromTunnel(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {
		Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "in/1"}}},
	}}}))
	before, err := e.d.Drops("red")
	must(t, err)
	short := tcpPkt(farAddr, 46000, pod2Addr, 80, tcpSYN, 63, nil)[:22]
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), short)); ret != tcShot {
		t.Errorf("short tcp from the tunnel: return %d, want drop", ret)
	}
	after, err := e.d.Drops("red")
	must(t, err)
	if got := after.Malformed - before.Malformed; got != 1 {
		t.Errorf("malformed drops %d, want 1", got)
	}
	whole := tcpPkt(farAddr, 46001, pod2Addr, 80, tcpSYN, 63, nil)
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), whole)); ret != tcRedirect {
		t.Errorf("whole syn from the tunnel: return %d, want redirect", ret)
	}
}
