package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// policyEntries is the flow table's policy entries.
func policyEntries(t *testing.T, e *packetEnv) map[forwarderFlowKey]forwarderFlow {
	t.Helper()
	flows, err := e.d.readFlows()
	must(t, err)
	out := map[forwarderFlowKey]forwarderFlow{}
	for k, f := range flows {
		if k.Pad[0] == flowSpacePolicy {
			out[k] = f
		}
	}
	return out
}

// oneEntryPolicy isolates pod1 both ways: it may open TCP to port 80 and
// be reached on UDP port 6000.
func oneEntryPolicy() PolicyConfig {
	return PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {
		Egress:  &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "out/1"}}},
		Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{6000, 6000}, Action: PolicyAccept, Entry: "in/1"}}},
	}}}
}

// TestPolicyOneEntryPerFlow: a flow policy decides is one entry in the
// flow table, found from both ways: replies pass through it whether the
// flow was opened by the lower or the higher address (the key's
// canonical direction or its reverse), the listing shows both ways, and
// the collector keeps the entry while the flow is alive by the state of
// both ways (a TCP reply seen makes it established) and removes it once
// idle.
func TestPolicyOneEntryPerFlow(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetPolicy(oneEntryPolicy()))
	send := func(name string, from int, frame []byte, want uint32) {
		t.Helper()
		if ret, _ := runFrom(t, e.d.progs.PodIngress, from, frame); ret != want {
			t.Fatalf("%s: return %d, want %d", name, ret, want)
		}
	}
	fromPod2 := func(pkt []byte) []byte { return eth(pod2MAC, pod2PeerMAC, 0x0800, pkt) }
	// Flow A: pod1 (the lower address) opens TCP to pod2:80.
	send("syn of pod1", 1, fromPod1(tcpPkt(pod1Addr, 41000, pod2Addr, 80, tcpSYN, 64, nil)), tcRedirect)
	send("syn-ack back to pod1", e.pod2, fromPod2(tcpPkt(pod2Addr, 80, pod1Addr, 41000, 0x12, 64, nil)), tcRedirect)
	// Flow B: pod2 (the higher address) opens UDP to pod1:6000; pod1's
	// answer passes its egress, which allows only TCP 80, as a reply.
	send("udp of pod2", e.pod2, fromPod2(udpPkt(pod2Addr, 5000, pod1Addr, 6000, 64, nil, true)), tcRedirect)
	send("udp answer of pod1", 1, fromPod1(udpPkt(pod1Addr, 6000, pod2Addr, 5000, 64, nil, true)), tcRedirect)
	// Flow C: refused at pod1's ingress; what looks like its reply is too.
	send("udp of pod2 to a closed port", e.pod2, fromPod2(udpPkt(pod2Addr, 5001, pod1Addr, 7000, 64, nil, true)), tcShot)
	send("answer to a refused flow", 1, fromPod1(udpPkt(pod1Addr, 7000, pod2Addr, 5001, 64, nil, true)), tcShot)

	entries := policyEntries(t, e)
	if len(entries) != 3 {
		t.Fatalf("%d policy entries for three flows, want 3 (one each)", len(entries))
	}
	for k, f := range entries {
		if f.Flags&flowBoth == 0 || f.Reverse != k {
			t.Errorf("entry %+v: %+v, want one entry for both ways", k, f)
		}
	}
	flows, err := e.d.PolicyFlows()
	must(t, err)
	got := map[string]string{}
	for _, f := range flows {
		got[fmt.Sprintf("%v>%v reply=%v", f.Source, f.Dest, f.Reply)] = f.Verdict
	}
	want := map[string]string{
		"10.1.0.2:41000>10.1.0.3:80 reply=false": "ALLOW", "10.1.0.3:80>10.1.0.2:41000 reply=true": "ALLOW",
		"10.1.0.3:5000>10.1.0.2:6000 reply=false": "ALLOW", "10.1.0.2:6000>10.1.0.3:5000 reply=true": "ALLOW",
		"10.1.0.3:5001>10.1.0.2:7000 reply=false": "DENY", "10.1.0.2:7000>10.1.0.3:5001 reply=true": "DENY",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("policy flows %v, want %v", got, want)
	}
	// Two minutes idle: both UDP flows have expired, the TCP flow is
	// established (the reply's SYN-ACK was recorded), so it stays.
	gc, err := e.d.collectFlowsAt(FlowTimeouts{}, monotonicNow()+uint64(2*time.Minute))
	must(t, err)
	if gc.Expired != 2 || gc.Evicted != 0 {
		t.Errorf("collection after 2 min: %+v, want 2 expired, none evicted", gc)
	}
	if n := len(policyEntries(t, e)); n != 1 {
		t.Errorf("%d policy entries after the collection, want 1 (the established TCP flow)", n)
	}
	gc, err = e.d.collectFlowsAt(FlowTimeouts{}, monotonicNow()+uint64(7*time.Hour))
	must(t, err)
	if gc.Expired != 1 || len(policyEntries(t, e)) != 0 {
		t.Errorf("collection after 7 h: %+v, %d entries left; want the TCP flow expired", gc, len(policyEntries(t, e)))
	}
}

// TestPolicyTwoEntryUpgrade: a flow written in the earlier two-entry
// layout (as a forwarder before the upgrade left it in the pinned table)
// keeps passing: its reply is decided again as the reply of the flow's
// first way and gets the flow's one entry, and the collector removes the
// left-over half without touching the new entry.
func TestPolicyTwoEntryUpgrade(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, e.d.SetPolicy(oneEntryPolicy()))
	e.d.mu.Lock()
	gen, vrf := e.d.pol.gen, e.d.vrfs["red"]
	e.d.mu.Unlock()
	u32 := func(b [4]byte) uint32 { return binary.NativeEndian.Uint32(b[:]) }
	fwd := forwarderFlowKey{Vrf: vrf, Saddr: u32(pod1Addr.As4()), Daddr: u32(pod2Addr.As4()), Sport: be16(42000), Dport: be16(80), Proto: 6}
	fwd.Pad[0] = flowSpacePolicy
	rev := forwarderFlowKey{Vrf: vrf, Saddr: fwd.Daddr, Daddr: fwd.Saddr, Sport: fwd.Dport, Dport: fwd.Sport, Proto: 6}
	rev.Pad[0] = flowSpacePolicy
	made := monotonicNow() - uint64(5*time.Second)
	must(t, e.d.maps.Flows.Put(&fwd, &forwarderFlow{Seen: made, Created: made, Reverse: rev, NatAddr: gen, Flags: flowSeen | flowSyn}))
	must(t, e.d.maps.Flows.Put(&rev, &forwarderFlow{Seen: made, Created: made, Reverse: fwd, NatAddr: gen, Flags: flowReply | flowSeen | flowSyn}))

	// The reply comes in first, then pod1's next packet.
	reply := eth(pod2MAC, pod2PeerMAC, 0x0800, tcpPkt(pod2Addr, 80, pod1Addr, 42000, 0x10, 64, []byte("data")))
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, reply); ret != tcRedirect {
		t.Fatalf("reply of a two-entry flow to the isolated pod1: return %d, want redirect", ret)
	}
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 42000, pod2Addr, 80, 0x10, 64, []byte("more")))); ret != tcRedirect {
		t.Fatalf("pod1's next packet: return %d, want redirect", ret)
	}
	gc, err := e.d.CollectFlows(FlowTimeouts{})
	must(t, err)
	if gc.Evicted != 1 || gc.Expired != 0 {
		t.Errorf("collection: %+v, want the left-over half removed (1 evicted)", gc)
	}
	entries := policyEntries(t, e)
	f, ok := entries[fwd]
	if len(entries) != 1 || !ok || f.Flags&flowBoth == 0 || f.Flags&flowSwapped != 0 || f.Verdict != verdictAllow ||
		f.Flags>>polReplyShift&flowSeen == 0 {
		t.Errorf("entries after the upgrade %+v, want one for both ways under %+v, first way pod1's, allowed, reply seen", entries, fwd)
	}
	if ret, _ := runFrom(t, e.d.progs.PodIngress, e.pod2, reply); ret != tcRedirect {
		t.Errorf("reply after the collection: return %d, want redirect", ret)
	}
}
