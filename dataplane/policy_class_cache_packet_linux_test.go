package dataplane

import "testing"

// TestPolicyClassCache: the per-CPU classification cache (pol_class_cache)
// answers a new flow between the same addresses to the same port with the
// rule classified before, but never across a change, even when the change
// writes a new attachment under the id of the one classified (a spare),
// and never for an attachment with source-port rules (there the source
// port decides).
func TestPolicyClassCache(t *testing.T) {
	e := newPacketEnv(t)
	set := func(att *Attachment) {
		t.Helper()
		must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: att}}}))
		must(t, e.d.PrunePolicy())
	}
	send := func(name string, sport uint16, pass bool) {
		t.Helper()
		ret, _ := run(t, e.d.progs.PodIngress, fromPod1(udpPkt(pod1Addr, sport, pod2Addr, 53, 64, nil, true)))
		if got := ret == tcRedirect; got != pass {
			t.Errorf("%s (udp %d → 53): return %d, want pass=%v", name, sport, ret, pass)
		}
	}
	a := &Attachment{Rules: []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept, Entry: "a/1"}}}
	// b has a rule, so that PrunePolicy keeps a as a spare (no more rules
	// than those in force).
	b := &Attachment{Rules: []PolicyRule{{Protocol: 1, Action: PolicyAccept, Entry: "b/1"}}, Default: PolicyAccept}
	// c's rule 0 accepts TCP only: a classification of a's kept (rule 0)
	// would pass the UDP flow that c's rule 1 drops.
	c := &Attachment{Rules: []PolicyRule{
		{Protocol: 6, Action: PolicyAccept, Entry: "c/1"},
		{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyDrop, Entry: "c/2"},
	}, Default: PolicyAccept}
	set(a)
	idA := e.d.pol.byPrint[a.fingerprint()].id
	send("a", 1000, true)
	send("a, a new flow (classified before)", 1001, true)
	set(b)
	set(c)
	if id := e.d.pol.byPrint[c.fingerprint()].id; id != idA {
		t.Fatalf("c written under id %d, want a's %d (the spare)", id, idA)
	}
	send("c under a's id", 1002, false)
	// Source ports decide: the same addresses and port, another verdict.
	d := &Attachment{Rules: []PolicyRule{
		{Protocol: 17, SourcePorts: PortRange{2000, 2100}, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept, Entry: "d/1"},
	}}
	set(d)
	send("d, source port in range", 2050, true)
	send("d, source port out of range", 3000, false)
}
