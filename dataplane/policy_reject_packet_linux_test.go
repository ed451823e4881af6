package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

// TestPolicyRejectOverTunnelExact: a packet from the tunnel that pod2's
// ingress or the VRF's tunnel ingress refuses with REJECT is answered over
// the tunnel: the reset (or ICMP unreachable, code 13, quoting the packet
// as it was to be delivered) goes to the sender's host encapsulated as the
// VRF's route to the sender says, MPLSoUDP with its label or MPLSoMPLS
// with the transport and VPN labels. A sender the VRF has no route back
// to is only dropped. Both are counted.
func TestPolicyRejectOverTunnelExact(t *testing.T) {
	e := newPacketEnv(t)
	mplsSender := netip.MustParseAddr("10.3.0.7")     // routed MPLSoMPLS via 192.0.2.3, label 200
	unrouted := netip.MustParseAddr("10.9.0.1")       // no route in red
	tunnelRejected := netip.MustParseAddr("10.3.0.9") // the tunnel ingress rejects it
	must(t, e.d.SetPolicy(PolicyConfig{
		Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: &Attachment{Rules: []PolicyRule{
			{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "in/10"},
			{Protocol: 6, DestinationPorts: PortRange{23, 23}, Action: PolicyReject, Reject: RejectICMP, Entry: "in/20"},
		}, Default: PolicyReject}}},
		Tunnel: map[string]*Attachment{"red": {Rules: []PolicyRule{
			{Sources: pfx("10.3.0.9/32"), Action: PolicyReject, Reject: RejectTCPReset, Entry: "tun/10"},
		}, Default: PolicyAccept}},
	}))
	over := func(from netip.Addr, inner []byte) []byte {
		return underlayFrame(from, 6635, lse(1000, true, 63), inner)
	}
	overUDP := func(inner []byte) []byte {
		h := append([]byte(nil), inner[:24]...)
		if h[9] == 1 {
			copy(h[20:], []byte{0, 0, 0, 0}) // flow_hash: no ports for ICMP
		}
		sport := uint16(49152 | flowHash(h)&0x3fff)
		outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
			packet(udp(sport, 6635, cat(lse(100, true, 64), inner)))
		return eth(peer2MAC, underlayMAC, 0x0800, outer)
	}

	// A TCP SYN to a port pod2's ingress rejects by default: a reset
	// (acknowledging the SYN) back to 10.2.0.5 over MPLSoUDP, label 100.
	syn := tcpPkt(farAddr, 42000, pod2Addr, 22, tcpSYN, 64, nil)
	ret, out := run(t, e.d.progs.UnderlayIngress, over(remote2, syn))
	if ret != tcRedirect {
		t.Fatalf("rejected syn from the tunnel: return %d, want redirect (the reset)", ret)
	}
	assertBytes(t, "reset over mpls/udp", out, overUDP(rejectReset(pod2Addr, farAddr, 22, 42000, 1001)))

	// UDP: ICMP unreachable quoting the datagram as it was to be
	// delivered (TTL already decremented).
	dgram := udpPkt(farAddr, 42001, pod2Addr, 53, 64, []byte("query"), true)
	ret, out = run(t, e.d.progs.UnderlayIngress, over(remote2, dgram))
	if ret != tcRedirect {
		t.Fatalf("rejected udp from the tunnel: return %d, want redirect", ret)
	}
	assertBytes(t, "icmp unreachable over mpls/udp", out, overUDP(rejectUnreachable(pod2Addr, farAddr, withTTL(dgram, 63))))

	// TCP rejected with ICMP, as the entry says.
	telnet := tcpPkt(farAddr, 42002, pod2Addr, 23, tcpSYN, 64, nil)
	ret, out = run(t, e.d.progs.UnderlayIngress, over(remote2, telnet))
	if ret != tcRedirect {
		t.Fatalf("syn rejected with icmp: return %d, want redirect", ret)
	}
	assertBytes(t, "icmp for tcp over mpls/udp", out, overUDP(rejectUnreachable(pod2Addr, farAddr, withTTL(telnet, 63))))

	// A later packet of the rejected flow is answered again (the verdict
	// is in the flow table).
	if ret, out = run(t, e.d.progs.UnderlayIngress, over(remote2, syn)); ret != tcRedirect {
		t.Fatalf("second rejected syn: return %d, want redirect", ret)
	}
	assertBytes(t, "reset of the second syn", out, overUDP(rejectReset(pod2Addr, farAddr, 22, 42000, 1001)))

	// The VRF's tunnel ingress rejects 10.3.0.9, which red routes over
	// MPLSoMPLS (192.0.2.3, transport label 16001, VPN label 200).
	syn3 := tcpPkt(tunnelRejected, 42003, pod2Addr, 80, tcpSYN, 64, nil)
	ret, out = run(t, e.d.progs.UnderlayIngress, over(remote3, syn3))
	if ret != tcRedirect {
		t.Fatalf("syn the tunnel ingress rejects: return %d, want redirect", ret)
	}
	assertBytes(t, "reset over mpls/mpls", out,
		eth(peer3MAC, underlayMAC, 0x8847, cat(lse(16001, false, 64), lse(200, true, 64), rejectReset(pod2Addr, tunnelRejected, 80, 42003, 1001))))
	// Its neighbor 10.3.0.7 passes the tunnel and pod2 accepts port 80.
	if ret, _ := run(t, e.d.progs.UnderlayIngress, over(remote3, tcpPkt(mplsSender, 42004, pod2Addr, 80, tcpSYN, 64, nil))); ret != tcRedirect {
		t.Fatalf("accepted syn: return %d, want redirect", ret)
	}

	// No route back to the sender: dropped and counted as unsent; a reset
	// is never answered.
	if ret, _ := run(t, e.d.progs.UnderlayIngress, over(remote2, tcpPkt(unrouted, 42005, pod2Addr, 22, tcpSYN, 64, nil))); ret != tcShot {
		t.Errorf("rejected syn from an unrouted sender: return %d, want drop", ret)
	}
	if ret, _ := run(t, e.d.progs.UnderlayIngress, over(remote2, tcpPkt(farAddr, 42006, pod2Addr, 22, 0x04, 64, nil))); ret != tcShot {
		t.Errorf("rejected reset: return %d, want a silent drop", ret)
	}

	c, err := e.d.VRFTunnelRejects("red")
	must(t, err)
	if c.Sent != 5 || c.Unsent != 1 {
		t.Errorf("red tunnel rejects %+v, want 5 sent, 1 unsent", c)
	}
	all, tunnel, err := e.d.VRFPolicyDenied("red")
	must(t, err)
	if all != 7 || tunnel != 1 {
		t.Errorf("red denied %d (tunnel %d), want 7 (1)", all, tunnel)
	}
	// The flow table records who refused and where.
	flows, err := e.d.PolicyFlows()
	must(t, err)
	got := map[string]PolicyFlow{}
	for _, f := range flows {
		got[fmt.Sprintf("%v>%v", f.Source, f.Dest)] = f
	}
	for k, want := range map[string]PolicyFlow{
		"10.2.0.5:42000>10.1.0.3:22": {Verdict: "REJECT", DeniedAt: "INGRESS", DeniedIfindex: e.pod2},
		"10.2.0.5:42002>10.1.0.3:23": {Verdict: "REJECT", DeniedAt: "INGRESS", DeniedIfindex: e.pod2, DecidedBy: []string{"in/20"}},
		"10.3.0.9:42003>10.1.0.3:80": {Verdict: "REJECT", DeniedAt: "TUNNEL_INGRESS", DecidedBy: []string{"tun/10"}},
		"10.3.0.7:42004>10.1.0.3:80": {Verdict: "ALLOW", DecidedBy: []string{"in/10"}},
	} {
		f := got[k]
		if f.Verdict != want.Verdict || f.DeniedAt != want.DeniedAt || f.DeniedIfindex != want.DeniedIfindex || fmt.Sprint(f.DecidedBy) != fmt.Sprint(want.DecidedBy) {
			t.Errorf("flow %s: %+v, want verdict %s denied at %q (%d) by %v", k, f, want.Verdict, want.DeniedAt, want.DeniedIfindex, want.DecidedBy)
		}
	}
	ec, err := e.d.EndpointCounters(remote3)
	must(t, err)
	if ec.TxPackets != 1 {
		t.Errorf("endpoint 192.0.2.3 sent %d packets, want 1 (the reset)", ec.TxPackets)
	}
}

// rejectReset is the IPv4 packet pol_reject answers a TCP segment with: a
// reset from src to dst, ports sport and dport, with ACK and the given
// acknowledgement number.
func rejectReset(src, dst netip.Addr, sport, dport uint16, ack uint32) []byte {
	rst := make([]byte, 20)
	binary.BigEndian.PutUint16(rst[0:], sport)
	binary.BigEndian.PutUint16(rst[2:], dport)
	binary.BigEndian.PutUint32(rst[8:], ack)
	rst[12] = 5 << 4
	rst[13] = 0x14 // RST, ACK
	binary.BigEndian.PutUint16(rst[16:], l4sum(src, dst, 6, rst))
	return ip4{src: src, dst: dst, proto: 6, ttl: 64}.packet(rst)
}

// rejectUnreachable is the ICMP destination unreachable (code 13) from src
// to dst that pol_reject answers a packet with, quoting the first 28 bytes
// of quoted.
func rejectUnreachable(src, dst netip.Addr, quoted []byte) []byte {
	msg := cat([]byte{3, 13, 0, 0, 0, 0, 0, 0}, quoted[:28])
	binary.BigEndian.PutUint16(msg[2:], csum(msg))
	return ip4{src: src, dst: dst, proto: 1, ttl: 64}.packet(msg)
}
