package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// unrelatedTunnelACL is a tunnel-ingress attachment of red that concerns
// no flow of these tests: with it policy is active in red while pod1 and
// pod2 have no attachment of their own.
func unrelatedTunnelACL() map[string]*Attachment {
	return map[string]*Attachment{"red": {Default: PolicyAccept, Rules: []PolicyRule{{Sources: pfx("10.2.0.66/32"), Action: PolicyDrop}}}}
}

// TestPolicyNewlyAppliedToLiveFlow: a TCP flow between two pods no
// attachment concerns, opened while policy is active in the VRF, keeps
// the way it was opened. Once pod2 is isolated for ingress, pod2's next
// packet is not taken for the flow's first packet: the flow is decided
// again on the client's way and the client's packets are dropped (they
// used to pass as replies of a flow pod2 had opened).
func TestPolicyNewlyAppliedToLiveFlow(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetPolicy(PolicyConfig{Tunnel: unrelatedTunnelACL()}))
	syn := tcpPkt(pod1Addr, 41000, pod2Addr, 5432, tcpSYN, 64, nil)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(syn)); ret != tcRedirect {
		t.Fatalf("syn: %d", ret)
	}
	// The way is recorded outside the flow table.
	if entries, err := e.d.readFlows(); err != nil || len(entries) != 0 {
		t.Fatalf("flow table after an unprotected syn: %d entries, %v (want none)", len(entries), err)
	}
	synAck := tcpPkt(pod2Addr, 5432, pod1Addr, 41000, 0x12, 64, nil)
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, synAck)); ret != tcRedirect {
		t.Fatalf("syn-ack: %d", ret)
	}

	// Now pod2 (the database) is isolated for ingress: nothing may reach it.
	must(t, e.d.SetPolicy(PolicyConfig{Tunnel: unrelatedTunnelACL(), Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{}}}}))
	push := tcpPkt(pod2Addr, 5432, pod1Addr, 41000, 0x18, 64, []byte("row"))
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, push)); ret != tcShot {
		t.Errorf("server's push after the change: return %d, want drop (a reply of a denied flow)", ret)
	}
	for i := range 3 {
		ack := tcpPkt(pod1Addr, 41000, pod2Addr, 5432, 0x18, 64, []byte("select"))
		if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(ack)); ret != tcShot {
			t.Errorf("client packet %d to the now-isolated pod2:5432: return %d, want drop", i, ret)
		}
	}
	flows, err := e.d.PolicyFlows()
	must(t, err)
	if len(flows) != 2 || flows[0].Source != netip.AddrPortFrom(pod1Addr, 41000) || flows[0].Verdict != "DENY" || flows[0].Reply {
		t.Errorf("policy flows: %+v, want pod1:41000 -> pod2:5432 denied and its reply", flows)
	}
}

// TestPolicyNewlyAppliedKeepsReplies: the other way round, a TCP flow
// opened by pod1 while nothing concerned it keeps passing once pod1 is
// isolated for ingress: the server's next packet is a reply of a flow
// pod1's (open) egress allows, not a new flow into pod1 (it used to be
// dropped as one).
func TestPolicyNewlyAppliedKeepsReplies(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetPolicy(PolicyConfig{Tunnel: unrelatedTunnelACL()}))
	syn := tcpPkt(pod1Addr, 41002, pod2Addr, 8080, tcpSYN, 64, nil)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(syn)); ret != tcRedirect {
		t.Fatalf("syn: %d", ret)
	}
	must(t, e.d.SetPolicy(PolicyConfig{Tunnel: unrelatedTunnelACL(), Interfaces: map[int]InterfacePolicy{1: {Ingress: &Attachment{}}}}))
	for i := range 2 {
		push := tcpPkt(pod2Addr, 8080, pod1Addr, 41002, 0x18, 64, []byte("data"))
		if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, push)); ret != tcRedirect {
			t.Errorf("server's packet %d of pod1's live flow: return %d, want redirect (a reply)", i, ret)
		}
	}
	ack := tcpPkt(pod1Addr, 41002, pod2Addr, 8080, 0x10, 64, nil)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(ack)); ret != tcRedirect {
		t.Errorf("pod1's packet of its own flow: return %d, want redirect", ret)
	}
	// A new flow into pod1 is refused.
	in := tcpPkt(pod2Addr, 41003, pod1Addr, 22, tcpSYN, 64, nil)
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, in)); ret != tcShot {
		t.Errorf("a new flow into pod1: return %d, want drop", ret)
	}
}

// TestPolicyMalformedFromTunnelNotAnswered: after a tunnel SYN was
// refused with REJECT, a malformed tunnelled packet on the same CPU is
// only dropped (the earlier packet's verdict was still in the per-CPU
// work area and answered it).
func TestPolicyMalformedFromTunnelNotAnswered(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{Default: PolicyReject}}}}))
	syn := underlayFrame(remote2, 6635, lse(1000, true, 63), tcpPkt(farAddr, 42000, pod2Addr, 80, tcpSYN, 64, nil))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, syn); ret != tcRedirect {
		t.Fatalf("rejected syn from the tunnel: %d, want the answer redirected", ret)
	}
	before, err := e.d.VRFTunnelRejects("red")
	must(t, err)
	short := udpPkt(farAddr, 42001, pod2Addr, 53, 64, []byte("0123456789abcdef"), false)
	short = short[:23] // UDP header cut to 3 bytes; the IPv4 header still says 44
	ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), short))
	after, err := e.d.VRFTunnelRejects("red")
	must(t, err)
	if ret != tcShot || after != before {
		t.Errorf("a malformed packet was answered: return %d, rejects %+v -> %+v", ret, before, after)
	}
}

// TestPolicyMalformedCountedOnInterface: a packet policy drops as
// malformed counts on the pod interface, as in-drops of the pod that sent
// it and out-drops of the pod it was for.
func TestPolicyMalformedCountedOnInterface(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		1:      {Egress: &Attachment{Rules: []PolicyRule{{Protocol: 6, Action: PolicyAccept}}}},
		e.pod2: {Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 17, Action: PolicyAccept}}}},
	}}))
	before1, err := e.d.InterfaceCounters(1)
	must(t, err)
	short := tcpPkt(pod1Addr, 43002, farAddr, 80, tcpSYN, 64, nil)[:22]
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(short)); ret != tcShot {
		t.Fatalf("short tcp from pod1: %d", ret)
	}
	after1, err := e.d.InterfaceCounters(1)
	must(t, err)
	if after1.RxDrops-before1.RxDrops != 1 {
		t.Errorf("in-drops of pod1 grew by %d, want 1", after1.RxDrops-before1.RxDrops)
	}
	before2, err := e.d.InterfaceCounters(e.pod2)
	must(t, err)
	shortUDP := udpPkt(farAddr, 42001, pod2Addr, 53, 64, []byte("0123456789abcdef"), false)[:23]
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), shortUDP)); ret != tcShot {
		t.Fatalf("short udp from the tunnel: %d", ret)
	}
	after2, err := e.d.InterfaceCounters(e.pod2)
	must(t, err)
	if after2.TxDrops-before2.TxDrops != 1 || after2.TxPackets != before2.TxPackets {
		t.Errorf("pod2 out-drops grew by %d and out-pkts by %d, want 1 and 0",
			after2.TxDrops-before2.TxDrops, after2.TxPackets-before2.TxPackets)
	}
}

// TestPolicySNATReplyAfterDeny: replies of a source-NATed flow pass the
// pod's policy. Once a change denies the flow, replies from outside are
// dropped (they used to reach the pod and keep the flow alive).
func TestPolicySNATReplyAfterDeny(t *testing.T) {
	e := natEnv(t)
	snatOne(t, e)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Rules: []PolicyRule{{Destinations: pfx("203.0.113.0/24"), Action: PolicyAccept}}}}}}))
	fromGW := func(pkt []byte) []byte { return eth(underlayMAC, gwMAC, 0x0800, pkt) }
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(udpPkt(pod1Addr, 40001, inetAddr, 5004, 64, []byte("play"), true))); ret != tcRedirect {
		t.Fatalf("request: %d", ret)
	}
	before, err := e.d.InterfaceCounters(1)
	must(t, err)
	if ret, _ := run(t, e.d.progs.UnderlayIngress, fromGW(udpPkt(inetAddr, 5004, hostAddr, 20000, 60, []byte("frame"), true))); ret != tcRedirect {
		t.Fatalf("first reply: %d", ret)
	}
	after, err := e.d.InterfaceCounters(1)
	must(t, err)
	if after.TxPackets-before.TxPackets != 1 {
		t.Errorf("an allowed reply counted %d times in out-pkts, want 1", after.TxPackets-before.TxPackets)
	}
	// The pod's egress now allows nothing.
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{}}}}))
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(udpPkt(pod1Addr, 40001, inetAddr, 5004, 64, []byte("more"), true))); ret != tcShot {
		t.Errorf("pod's packet of the denied flow: %d, want drop", ret)
	}
	for i := range 3 {
		if ret, _ := run(t, e.d.progs.UnderlayIngress, fromGW(udpPkt(inetAddr, 5004, hostAddr, 20000, 60, []byte("frame"), true))); ret != tcShot {
			t.Errorf("reply %d of the now-denied flow: return %d, want drop", i, ret)
		}
	}
}

// fragment is an IPv4 fragment of pod src's datagram id: the first (with
// the UDP header in payload, more fragments) or a later one at offset
// 72 bytes, the last.
func fragment(src, dst netip.Addr, id uint16, first bool, payload []byte) []byte {
	flags := uint16(9) // offset 72 bytes, last
	if first {
		flags = 0x2000 // more fragments, offset 0
	}
	return ip4{src: src, dst: dst, proto: 17, ttl: 64, id: id, flags: flags}.packet(payload)
}

// TestPolicyFragmentedReply: the fragments after the first of an allowed
// flow's reply are the flow's (they carry no ports: the first fragment's
// are remembered), so an ingress-isolated client gets whole datagrams
// (they used to be judged as a new flow and dropped).
func TestPolicyFragmentedReply(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	// pod1: default-deny ingress (the usual Kubernetes namespace default), egress open.
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Ingress: &Attachment{}}}}))
	q := udpPkt(pod1Addr, 40000, pod2Addr, 5000, 64, []byte("query"), true)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(q)); ret != tcRedirect {
		t.Fatalf("query: %d", ret)
	}
	fromPod2 := func(pkt []byte) []byte { return eth(pod2MAC, pod2PeerMAC, 0x0800, pkt) }
	for id := uint16(77); id < 80; id++ {
		first := fragment(pod2Addr, pod1Addr, id, true, udp(5000, 40000, make([]byte, 64)))
		if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, fromPod2(first)); ret != tcRedirect {
			t.Fatalf("first fragment of reply %d: %d, want redirect", id, ret)
		}
		later := fragment(pod2Addr, pod1Addr, id, false, make([]byte, 40))
		if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, fromPod2(later)); ret != tcRedirect {
			t.Errorf("second fragment of reply %d of the allowed flow: return %d, want redirect", id, ret)
		}
	}
	// A later fragment whose first was never seen is still judged alone.
	stray := fragment(pod2Addr, pod1Addr, 99, false, make([]byte, 40))
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, fromPod2(stray)); ret != tcShot {
		t.Errorf("a fragment without its first: return %d, want drop", ret)
	}
}

// TestPolicyFragmentsFollowFirst: a rule on ports decides every fragment
// of a datagram as its first: all of a datagram to an allowed port pass,
// none of one to another port.
func TestPolicyFragmentsFollowFirst(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Rules: []PolicyRule{
		{Protocol: 17, DestinationPorts: PortRange{5000, 5000}, Action: PolicyAccept}}}}}}))
	for _, c := range []struct {
		port uint16
		want uint32
	}{{5000, tcRedirect}, {6000, tcShot}} {
		first := fragment(pod1Addr, pod2Addr, c.port, true, udp(40000, c.port, make([]byte, 64)))
		if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(first)); ret != c.want {
			t.Errorf("first fragment to port %d: return %d, want %d", c.port, ret, c.want)
		}
		later := fragment(pod1Addr, pod2Addr, c.port, false, make([]byte, 40))
		if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(later)); ret != c.want {
			t.Errorf("second fragment to port %d: return %d, want %d", c.port, ret, c.want)
		}
	}
}

// TestPolicyRejectThroughService: a REJECT of a flow to a service
// answers from the address and port the client connected to (the
// service's), not the backend's, which the client's socket would not
// recognise: a reset with the service as its source, and an ICMP error
// quoting the client's packet as it was sent.
func TestPolicyRejectThroughService(t *testing.T) {
	e := serviceEnv(t, backend(pod2Addr, 8080, true))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{Default: PolicyReject}}}}))
	syn := tcpPkt(pod1Addr, 40000, vipAddr, 80, tcpSYN, 64, nil)
	ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, syn))
	if ret != tcRedirect {
		t.Fatalf("syn: return %d, want the reset redirected back", ret)
	}
	// 1001: the SYN's sequence + 1.
	assertBytes(t, "reset", out, eth(pod1PeerMAC, loMAC, 0x0800, rejectReset(vipAddr, pod1Addr, 80, 40000, 1001)))

	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{Default: PolicyReject, DefaultReject: RejectICMP}}}}))
	syn = tcpPkt(pod1Addr, 40001, vipAddr, 80, tcpSYN, 64, nil)
	ret, out = run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, syn))
	if ret != tcRedirect {
		t.Fatalf("syn, rejected with icmp: return %d, want the error redirected back", ret)
	}
	// The quote: the client's header and first 8 bytes as sent.
	assertBytes(t, "icmp unreachable", out, eth(pod1PeerMAC, loMAC, 0x0800, rejectUnreachable(vipAddr, pod1Addr, syn)))
}

// TestPolicyRejectThroughServiceFromTunnel: the same for a client across
// the tunnel: the answer carried back is from the service.
func TestPolicyRejectThroughServiceFromTunnel(t *testing.T) {
	e := serviceEnv(t, backend(pod2Addr, 8080, true))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{Default: PolicyReject}}}}))
	syn := underlayFrame(remote2, 6635, lse(1000, true, 63), tcpPkt(farAddr, 42000, vipAddr, 80, tcpSYN, 64, nil))
	ret, out := run(t, e.d.progs.UnderlayIngress, syn)
	if ret != tcRedirect {
		t.Fatalf("syn: return %d, want the answer encapsulated back", ret)
	}
	inner := out[14+20+8+4:]
	src := netip.AddrFrom4([4]byte(inner[12:16]))
	sport := binary.BigEndian.Uint16(inner[20:22])
	if src != vipAddr || sport != 80 {
		t.Errorf("reset from %v:%d, want %v:80", src, sport, vipAddr)
	}
	if got := l4sum(vipAddr, farAddr, 6, inner[20:40]); got != 0 {
		t.Errorf("reset's TCP checksum does not verify (%#x)", got)
	}
}
