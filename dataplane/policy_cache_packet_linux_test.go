package dataplane

import (
	"testing"
	"time"
)

// TestPolicyCacheStampsSeen: packets of an established flow that pass on
// the per-CPU verdict cache still stamp the flow entry's seen time, at
// least every 250 ms (the cache entry ages out after 25 jiffies and the
// next packet goes through the flow table), so the agent's idle timeouts
// never remove a flow that is in use.
func TestPolicyCacheStampsSeen(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: &Attachment{Rules: []PolicyRule{
		{Protocol: 17, DestinationPorts: PortRange{5201, 5201}, Action: PolicyAccept, Entry: "out/1"},
	}}}}}))
	pkt := fromPod1(udpPkt(pod1Addr, 40100, pod2Addr, 5201, 64, nil, true))
	seen := func() uint64 {
		t.Helper()
		flows, err := e.d.readFlows()
		must(t, err)
		for k, f := range flows {
			if k.Pad[0] == flowSpacePolicy && be16(k.Sport) == 40100 && f.Flags&flowReply == 0 {
				return f.Seen
			}
		}
		t.Fatal("no policy flow entry for the packet")
		return 0
	}
	send := func() {
		t.Helper()
		if ret, _ := run(t, e.d.progs.PodIngress, pkt); ret != tcRedirect {
			t.Fatalf("return %d, want redirect", ret)
		}
	}
	send() // creates the flow and fills the cache
	first := seen()
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		send()
	}
	if last := seen(); last <= first {
		t.Errorf("flow seen %d after 450 ms of packets, want later than %d", last, first)
	}
	c, err := e.d.PolicyEntryCounters()
	must(t, err)
	if c["out/1"].Packets != 4 {
		t.Errorf("out/1 counted %d packets, want 4", c["out/1"].Packets)
	}
}
