package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// fromPod1 is a frame pod1 (ifindex 1) sends.
func fromPod1(pkt []byte) []byte { return eth(loMAC, pod1PeerMAC, 0x0800, pkt) }

// TestPolicyMatchTypes: every match type of a rule, the order of rules
// (the first match decides) and the default, on pod1's egress: a flow the
// policy accepts is forwarded, one it refuses is dropped.
func TestPolicyMatchTypes(t *testing.T) {
	e := newPacketEnv(t)
	udpTo := func(dst netip.Addr, sport, dport uint16) []byte {
		return udpPkt(pod1Addr, sport, dst, dport, 64, nil, true)
	}
	cases := []struct {
		name  string
		rules []PolicyRule
		def   PolicyAction
		pkt   []byte
		pass  bool
	}{
		{"destination prefix", []PolicyRule{{Destinations: pfx("10.1.0.3/32"), Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1000, 53), true},
		{"other destination", []PolicyRule{{Destinations: pfx("10.1.0.3/32"), Action: PolicyAccept}}, 0, udpTo(farAddr, 1001, 53), false},
		{"destination among prefixes", []PolicyRule{{Destinations: pfx("10.9.0.0/16", "10.2.0.0/24"), Action: PolicyAccept}}, 0, udpTo(farAddr, 1002, 53), true},
		{"source prefix", []PolicyRule{{Sources: pfx("10.1.0.0/24"), Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1003, 53), true},
		{"other source", []PolicyRule{{Sources: pfx("10.1.1.0/24"), Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1004, 53), false},
		{"no address matches", []PolicyRule{{Sources: []netip.Prefix{}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1005, 53), false},
		{"protocol", []PolicyRule{{Protocol: 17, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1006, 53), true},
		{"other protocol", []PolicyRule{{Protocol: 6, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1007, 53), false},
		{"destination port", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1008, 53), true},
		{"other destination port", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1009, 54), false},
		{"port range", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{5000, 6000}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1010, 5999), true},
		{"below the range", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{5000, 6000}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1011, 4999), false},
		{"above the range", []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{5000, 6000}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1012, 6001), false},
		{"source port range", []PolicyRule{{Protocol: 17, SourcePorts: PortRange{1000, 1100}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1013, 53), true},
		{"other source port", []PolicyRule{{Protocol: 17, SourcePorts: PortRange{2000, 2100}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1014, 53), false},
		{"icmp type", []PolicyRule{{Protocol: 1, ICMP: true, ICMPType: 8, Action: PolicyAccept}}, 0, icmpEcho(pod1Addr, pod2Addr, 8, 1, 1, 64), true},
		{"other icmp type", []PolicyRule{{Protocol: 1, ICMP: true, ICMPType: 8, Action: PolicyAccept}}, 0, icmpEcho(pod1Addr, pod2Addr, 13, 2, 1, 64), false},
		{"first match drops", []PolicyRule{{Destinations: pfx("10.1.0.3/32"), Action: PolicyDrop}, {Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1015, 53), false},
		{"first match accepts", []PolicyRule{{Destinations: pfx("10.1.0.0/24"), Action: PolicyAccept}, {Action: PolicyDrop}}, 0, udpTo(pod2Addr, 1016, 53), true},
		{"default accept", []PolicyRule{{Destinations: pfx("10.2.0.0/24"), Action: PolicyDrop}}, PolicyAccept, udpTo(pod2Addr, 1017, 53), true},
		{"nothing attached but a default", nil, PolicyDrop, udpTo(pod2Addr, 1018, 53), false},
		{"all constraints", []PolicyRule{{Sources: pfx("10.1.0.2/32"), Destinations: pfx("10.1.0.0/30"), Protocol: 17,
			SourcePorts: PortRange{1019, 1019}, DestinationPorts: PortRange{50, 60}, Action: PolicyAccept}}, 0, udpTo(pod2Addr, 1019, 53), true},
	}
	for i, c := range cases {
		for j := range c.rules {
			c.rules[j].Entry = fmt.Sprintf("case%d/%d", i, j)
		}
		must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Rules: c.rules, Default: c.def}}}}))
		ret, _ := run(t, e.d.progs.PodIngress, fromPod1(c.pkt))
		if pass := ret == tcRedirect; pass != c.pass {
			t.Errorf("%s: return %d, want pass=%v", c.name, ret, c.pass)
		}
	}
	d, err := e.d.InterfacePolicyDenied(1)
	must(t, err)
	if want := uint64(11); d.Egress != want || d.Ingress != 0 {
		t.Errorf("pod1 denied %+v, want %d on egress", d, want)
	}
	all, tunnel, err := e.d.VRFPolicyDenied("red")
	must(t, err)
	if all != 11 || tunnel != 0 {
		t.Errorf("red denied %d (tunnel %d), want 11 (0)", all, tunnel)
	}
}

// TestPolicyRejectExact: REJECT answers a TCP SYN with a RST and a UDP
// datagram with an ICMP unreachable (code 13) quoting it, sent back to the
// pod that sent it.
func TestPolicyRejectExact(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		e.pod2: {Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "web/10"}}, Default: PolicyReject}},
	}}))
	syn := tcpPkt(pod1Addr, 40000, pod2Addr, 22, tcpSYN, 64, nil)
	ret, out := run(t, e.d.progs.PodIngress, fromPod1(syn))
	if ret != tcRedirect {
		t.Fatalf("rejected syn: return %d, want redirect (the reset back to pod1)", ret)
	}
	// 1001: the SYN's sequence + 1.
	assertBytes(t, "reset", out, eth(pod1PeerMAC, loMAC, 0x0800, rejectReset(pod2Addr, pod1Addr, 22, 40000, 1001)))

	// A segment with ACK gets a reset numbered with its acknowledgement.
	ack := tcpPkt(pod1Addr, 40001, pod2Addr, 22, 0x10, 64, []byte("data"))
	binary.BigEndian.PutUint32(ack[28:], 777) // ack number
	binary.BigEndian.PutUint16(ack[36:], 0)
	binary.BigEndian.PutUint16(ack[36:], l4sum(pod1Addr, pod2Addr, 6, ack[20:]))
	ret, out = run(t, e.d.progs.PodIngress, fromPod1(ack))
	rst2 := make([]byte, 20)
	binary.BigEndian.PutUint16(rst2[0:], 22)
	binary.BigEndian.PutUint16(rst2[2:], 40001)
	binary.BigEndian.PutUint32(rst2[4:], 777)
	rst2[12] = 5 << 4
	rst2[13] = 0x04
	binary.BigEndian.PutUint16(rst2[16:], l4sum(pod2Addr, pod1Addr, 6, rst2))
	if ret != tcRedirect {
		t.Fatalf("rejected ack: return %d, want redirect", ret)
	}
	assertBytes(t, "reset of an ack", out, eth(pod1PeerMAC, loMAC, 0x0800, ip4{src: pod2Addr, dst: pod1Addr, proto: 6, ttl: 64}.packet(rst2)))

	// UDP: ICMP destination unreachable, administratively prohibited.
	frame, inner := podFrame(pod2Addr, 40002, 64, []byte("payload!"))
	ret, out = run(t, e.d.progs.PodIngress, frame)
	if ret != tcRedirect {
		t.Fatalf("rejected udp: return %d, want redirect", ret)
	}
	msg := cat([]byte{3, 13, 0, 0, 0, 0, 0, 0}, inner[:28])
	binary.BigEndian.PutUint16(msg[2:], csum(msg))
	assertBytes(t, "icmp unreachable", out, eth(pod1PeerMAC, mustMAC("00:00:00:00:00:00"), 0x0800,
		ip4{src: pod2Addr, dst: pod1Addr, proto: 1, ttl: 64}.packet(msg)))

	// TCP rejected with ICMP when the rule says so; a reset is never answered.
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		e.pod2: {Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 6, Action: PolicyReject, Reject: RejectICMP, Entry: "web/20"}}}},
	}}))
	ret, out = run(t, e.d.progs.PodIngress, fromPod1(syn))
	msg = cat([]byte{3, 13, 0, 0, 0, 0, 0, 0}, syn[:28])
	binary.BigEndian.PutUint16(msg[2:], csum(msg))
	if ret != tcRedirect {
		t.Fatalf("syn rejected with icmp: return %d, want redirect", ret)
	}
	assertBytes(t, "icmp for tcp", out, eth(pod1PeerMAC, loMAC, 0x0800, ip4{src: pod2Addr, dst: pod1Addr, proto: 1, ttl: 64}.packet(msg)))
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 40003, pod2Addr, 22, 0x04, 64, nil))); ret != tcShot {
		t.Errorf("rejected reset: return %d, want a silent drop", ret)
	}
	d, err := e.d.InterfacePolicyDenied(e.pod2)
	must(t, err)
	if d.Ingress != 5 {
		t.Errorf("pod2 ingress denied %d, want 5", d.Ingress)
	}
	c, err := e.d.PolicyEntryCounters()
	must(t, err)
	if c["web/20"].Packets != 2 {
		t.Errorf("entry web/20 counted %+v, want 2 packets", c["web/20"])
	}
}

// TestPolicyStatefulReplies: pod1 is isolated for ingress and may send
// anywhere; the replies of its flows come back, a flow pod2 opens does
// not. Later packets are counted on the entry that accepted the flow.
func TestPolicyStatefulReplies(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		1: {Ingress: &Attachment{}, Egress: &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "out/1"}}}},
	}}))
	syn := tcpPkt(pod1Addr, 41000, pod2Addr, 80, tcpSYN, 64, nil)
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(syn)); ret != tcRedirect {
		t.Fatalf("syn from pod1: return %d, want redirect", ret)
	}
	synack := tcpPkt(pod2Addr, 80, pod1Addr, 41000, 0x12, 64, nil)
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, synack)); ret != tcRedirect {
		t.Fatalf("syn-ack back to the isolated pod1: return %d, want redirect", ret)
	}
	for range 3 {
		ack := tcpPkt(pod1Addr, 41000, pod2Addr, 80, 0x10, 64, []byte("get"))
		if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(ack)); ret != tcRedirect {
			t.Fatalf("later packet: return %d, want redirect", ret)
		}
	}
	open := tcpPkt(pod2Addr, 80, pod1Addr, 41001, tcpSYN, 64, nil)
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, open)); ret != tcShot {
		t.Errorf("a flow pod2 opens toward pod1: return %d, want drop", ret)
	}
	c, err := e.d.PolicyEntryCounters()
	must(t, err)
	if c["out/1"].Packets != 5 {
		t.Errorf("out/1 counted %d packets, want 5 (both ways)", c["out/1"].Packets)
	}
	flows, err := e.d.PolicyFlows()
	must(t, err)
	verdicts := map[string]string{}
	for _, f := range flows {
		verdicts[fmt.Sprintf("%v>%v", f.Source, f.Dest)] = f.Verdict
	}
	for k, want := range map[string]string{
		"10.1.0.2:41000>10.1.0.3:80": "ALLOW", "10.1.0.3:80>10.1.0.2:41000": "ALLOW", "10.1.0.3:80>10.1.0.2:41001": "DENY",
	} {
		if verdicts[k] != want {
			t.Errorf("flow %s: verdict %q, want %s (flows %v)", k, verdicts[k], want, verdicts)
		}
	}
	// A policy change applies to established flows at their next packet.
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		1: {Egress: &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{81, 81}, Action: PolicyAccept, Entry: "out/2"}}}},
	}}))
	ack := tcpPkt(pod1Addr, 41000, pod2Addr, 80, 0x10, 64, []byte("more"))
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(ack)); ret != tcShot {
		t.Errorf("established flow after it was denied: return %d, want drop", ret)
	}
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, synack)); ret != tcShot {
		t.Errorf("reply of a denied flow: return %d, want drop", ret)
	}
}

// TestPolicyFromTunnel: the VRF's tunnel ingress and the destination
// pod's ingress apply to decapsulated packets, and the replies of a flow
// from the tunnel leave pod2 although pod2 is isolated for egress.
func TestPolicyFromTunnel(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{
		Interfaces: map[int]InterfacePolicy{e.pod2: {
			Ingress: &Attachment{Rules: []PolicyRule{{Sources: pfx("10.2.0.0/24"), Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "in/1"}}},
			Egress:  &Attachment{},
		}},
		Tunnel: map[string]*Attachment{"red": {Rules: []PolicyRule{{Sources: pfx("10.2.0.66/32"), Action: PolicyDrop, Entry: "tun/1"}}, Default: PolicyAccept}},
	}))
	from := func(src netip.Addr, sport, dport uint16) []byte {
		return underlayFrame(remote2, 6635, lse(1000, true, 63), tcpPkt(src, sport, pod2Addr, dport, tcpSYN, 64, nil))
	}
	if ret, _ := run(t, e.d.progs.UnderlayIngress, from(farAddr, 42000, 80)); ret != tcRedirect {
		t.Fatalf("allowed syn from the tunnel: return %d, want redirect", ret)
	}
	if ret, _ := run(t, e.d.progs.UnderlayIngress, from(farAddr, 42001, 81)); ret != tcShot {
		t.Errorf("syn from the tunnel to another port: return %d, want drop", ret)
	}
	if ret, _ := run(t, e.d.progs.UnderlayIngress, from(netip.MustParseAddr("10.2.0.66"), 42002, 80)); ret != tcShot {
		t.Errorf("syn from a source the tunnel ingress drops: return %d, want drop", ret)
	}
	synack := tcpPkt(pod2Addr, 80, farAddr, 42000, 0x12, 64, nil)
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, synack)); ret != tcRedirect {
		t.Errorf("reply toward the tunnel from the egress-isolated pod2: return %d, want redirect", ret)
	}
	other := tcpPkt(pod2Addr, 80, farAddr, 42003, tcpSYN, 64, nil)
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, eth(pod2MAC, pod2PeerMAC, 0x0800, other)); ret != tcShot {
		t.Errorf("a flow pod2 opens: return %d, want drop", ret)
	}
	all, tunnel, err := e.d.VRFPolicyDenied("red")
	must(t, err)
	if all != 3 || tunnel != 1 {
		t.Errorf("red denied %d, tunnel %d; want 3, 1", all, tunnel)
	}
}

// TestPolicyTenThousandRules: the first packet finds the first matching
// rule among 10,000 (odd rules drop, even ones accept, each its own port).
func TestPolicyTenThousandRules(t *testing.T) {
	e := newPacketEnv(t)
	rules := make([]PolicyRule, 10000)
	for i := range rules {
		rules[i] = PolicyRule{Sources: pfx(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256), "10.1.0.0/24"), Destinations: pfx("10.1.0.3/32"),
			Protocol: 17, DestinationPorts: PortRange{uint16(10000 + i), uint16(10000 + i)}, Action: PolicyAccept, Entry: fmt.Sprintf("big/%d", i)}
		if i%2 == 1 {
			rules[i].Action = PolicyDrop
		}
	}
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Rules: rules}}}}))
	for _, c := range []struct {
		port uint16
		pass bool
	}{{10000, true}, {10001, false}, {19998, true}, {19999, false}, {20000, false}, {14242, true}} {
		ret, _ := run(t, e.d.progs.PodIngress, fromPod1(udpPkt(pod1Addr, 3000, pod2Addr, c.port, 64, nil, true)))
		if pass := ret == tcRedirect; pass != c.pass {
			t.Errorf("port %d: return %d, want pass=%v", c.port, ret, c.pass)
		}
	}
	c, err := e.d.PolicyEntryCounters()
	must(t, err)
	if c["big/9998"].Packets != 1 || c["big/4242"].Packets != 1 || c["big/9999"].Packets != 1 {
		t.Errorf("entry counters: 9998 %+v, 4242 %+v, 9999 %+v; want one packet each", c["big/9998"], c["big/4242"], c["big/9999"])
	}
}

// TestPolicyEgressWithoutVRFRoute: a destination with no VRF route (what
// SNAT or host access would take) is still subject to the pod's egress:
// refused and counted as policy, not as no-route; an accepted one goes on
// to the no-route step as before.
func TestPolicyEgressWithoutVRFRoute(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		1: {Egress: &Attachment{Rules: []PolicyRule{{Destinations: pfx("203.0.113.0/24"), Action: PolicyAccept, Entry: "ext/1"}}}},
	}}))
	out := fromPod1(udpPkt(pod1Addr, 5000, netip.MustParseAddr("198.51.100.7"), 53, 64, nil, true))
	if ret, _ := run(t, e.d.progs.PodIngress, out); ret != tcShot {
		t.Fatalf("refused external destination: return %d, want drop", ret)
	}
	d, err := e.d.InterfacePolicyDenied(1)
	must(t, err)
	drops, err := e.d.Drops("red")
	must(t, err)
	if d.Egress != 1 || drops.NoRoute != 0 {
		t.Errorf("policy egress denied %d, no-route %d; want 1 and 0", d.Egress, drops.NoRoute)
	}
	ok := fromPod1(udpPkt(pod1Addr, 5001, netip.MustParseAddr("203.0.113.9"), 53, 64, nil, true))
	if ret, _ := run(t, e.d.progs.PodIngress, ok); ret != tcShot {
		t.Fatalf("accepted external destination without SNAT: return %d, want the no-route drop", ret)
	}
	drops, err = e.d.Drops("red")
	must(t, err)
	if drops.NoRoute != 1 {
		t.Errorf("no-route drops %d, want 1 (the accepted packet)", drops.NoRoute)
	}
}

// TestPolicyAdoptedAfterRestart: a new process keeps enforcing the pinned
// policy until its first SetPolicy, which then replaces it whole: points
// the new configuration leaves out stop being enforced (they do not fall
// to a default drop through an attachment that was removed), established
// flows are evaluated again.
func TestPolicyAdoptedAfterRestart(t *testing.T) {
	e := newPacketEnv(t)
	deny := &Attachment{Rules: []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept, Entry: "dns/1"}}}
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: deny}}}))
	toPod2 := func(dport uint16) uint32 {
		ret, _ := run(t, e.d.progs.PodIngress, fromPod1(udpPkt(pod1Addr, 6000, pod2Addr, dport, 64, nil, true)))
		return ret
	}
	if toPod2(53) != tcRedirect || toPod2(54) != tcShot {
		t.Fatal("policy before the restart not enforced")
	}
	d2, err := Open(Config{BPFFS: e.d.Dir(), Logger: quiet})
	must(t, err)
	t.Cleanup(func() { d2.Close() })
	must(t, e.d.Close())
	e.d = d2
	if toPod2(54) != tcShot {
		t.Error("the pinned policy is not enforced after the restart")
	}
	// The new configuration keeps policy in the VRF (pod1's egress accepts
	// everything) but none on pod2.
	must(t, d2.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Default: PolicyAccept}}}}))
	must(t, d2.PrunePolicy())
	if ret := toPod2(54); ret != tcRedirect {
		t.Errorf("after the new process removed pod2's attachment: return %d, want delivery", ret)
	}
}
