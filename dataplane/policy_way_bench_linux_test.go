package dataplane

import "testing"

// BenchmarkPolicyUnprotectedTCP measures pod_ingress on TCP between two
// pods no attachment concerns, in a VRF where policy is active (a tunnel
// ingress ACL): a SYN (a new source port each, so each writes the record
// of its flow's way, pol_note_way) and a packet of an open connection
// (nothing written). Before the way was recorded the two cost the same
// (neither fills the verdict cache), so syn minus ack is what recording
// costs. Run with -count to alternate the two.
func BenchmarkPolicyUnprotectedTCP(b *testing.B) {
	e := newPacketEnv(b)
	must(b, e.d.SetPolicy(PolicyConfig{Tunnel: unrelatedTunnelACL()}))
	syns := make([][]byte, 65000)
	for i := range syns {
		syns[i] = fromPod1(tcpPkt(pod1Addr, uint16(i+1), pod2Addr, 5432, tcpSYN, 64, nil))
	}
	ack := fromPod1(tcpPkt(pod1Addr, 40000, pod2Addr, 5432, 0x10, 64, nil))
	b.Run("syn", func(b *testing.B) {
		if _, err := e.d.deleteFlows(func(forwarderFlowKey, *forwarderFlow) bool { return true }); err != nil {
			b.Fatal(err)
		}
		benchRun(b, e.d.progs.PodIngress, tcRedirect, syns...)
	})
	b.Run("ack", func(b *testing.B) {
		benchRun(b, e.d.progs.PodIngress, tcRedirect, ack)
	})
}
