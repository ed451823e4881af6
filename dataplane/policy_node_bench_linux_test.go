package dataplane

import "testing"

// BenchmarkPolicyToNodeSNAT, …SNATHostAccess and …ToNode measure what
// policy_to_node (bpf/policy_node.h) adds to pod_ingress for a pod
// isolated for egress (its attachment accepts TCP, so the segments pass):
// an established source-NATed TCP flow in a VRF without host access (the
// hook stops at nat_vrfs) and with it (the hook asks the FIB, which
// forwards the destination, and the egress check runs as before); and a
// segment to the node's own address, which passes to the node's stack.
// Each builds its own namespace (the FIB lookups are the namespace's):
// alternate them by running the test binary once per benchmark, in
// rounds.
func BenchmarkPolicyToNodeSNAT(b *testing.B) { benchPolicyToNode(b, false, false) }

// BenchmarkPolicyToNodeSNATHostAccess: see BenchmarkPolicyToNodeSNAT.
func BenchmarkPolicyToNodeSNATHostAccess(b *testing.B) { benchPolicyToNode(b, true, false) }

// BenchmarkPolicyToNodeToNode: see BenchmarkPolicyToNodeSNAT.
func BenchmarkPolicyToNodeToNode(b *testing.B) { benchPolicyToNode(b, true, true) }

func benchPolicyToNode(b *testing.B, hostAccess, toNode bool) {
	e := natEnv(b)
	egress := &Attachment{Rules: []PolicyRule{{Protocol: 6, Action: PolicyAccept, Entry: "tcp/10"}}}
	must(b, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: egress}}}))
	must(b, e.d.SetExternal([]External{{VRF: "red", SNAT: true, HostAccess: hostAccess, Addr: hostAddr, PortMin: 10000, PortMax: 59999}}))
	dst, sport, dport := inetAddr, uint16(40000), uint16(443)
	if toNode {
		dst, sport, dport = hostAddr, 8080, 40000
	}
	syn := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, sport, dst, dport, tcpSYN, 64, nil))
	ack := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, sport, dst, dport, 0x10, 64, make([]byte, 64)))
	if ret, _ := run(b, e.d.progs.PodIngress, syn); ret != tcRedirect {
		b.Fatalf("first packet: return %d", ret)
	}
	benchRun(b, e.d.progs.PodIngress, tcRedirect, ack)
}
