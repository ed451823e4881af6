package dataplane

import "testing"

// TestPolicyWordsKeptAcrossRestart: a new process keeps the bitmap words
// and the rule slots of the classifier an earlier one left in use (its
// points still refer to them until the first SetPolicy switches them),
// and frees them once PrunePolicy has removed that classifier.
func TestPolicyWordsKeptAcrossRestart(t *testing.T) {
	e := newPacketEnv(t)
	inUse := func(d *Dataplane, rules bool) uint32 {
		t.Helper()
		d.mu.Lock()
		defer d.mu.Unlock()
		pt, err := d.policy()
		must(t, err)
		s := pt.words
		if rules {
			s = pt.ruleSlots
		}
		return s.size - s.free
	}
	used := func(d *Dataplane) uint32 { return inUse(d, false) }
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: benchPolicyRules(300, 53)}}}))
	before := used(e.d)
	if before == 0 {
		t.Fatal("no classifier word in use")
	}
	d2, err := Open(Config{BPFFS: e.d.Dir(), Logger: quiet})
	must(t, err)
	t.Cleanup(func() { d2.Close() })
	must(t, e.d.Close())
	e.d = d2
	if got := used(d2); got != before {
		t.Fatalf("after the restart %d words in use, want the earlier process's %d", got, before)
	}
	if got := inUse(d2, true); got != 300 {
		t.Fatalf("after the restart %d rule slots in use, want the earlier process's 300", got)
	}
	small := &Attachment{Rules: []PolicyRule{{Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept, Entry: "dns/1"}}}
	must(t, d2.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{e.pod2: {Ingress: small}}}))
	if got := used(d2); got <= before {
		t.Errorf("the new attachment written over the earlier one's words: %d in use, want more than %d", got, before)
	}
	must(t, d2.PrunePolicy())
	// src, dst and dport of one rule: one word each.
	if got := used(d2); got != 3 {
		t.Errorf("after PrunePolicy %d words in use, want 3", got)
	}
	if got := inUse(d2, true); got != 1 {
		t.Errorf("after PrunePolicy %d rule slots in use, want 1", got)
	}
	ret, _ := run(t, d2.progs.PodIngress, fromPod1(udpPkt(pod1Addr, 6000, pod2Addr, 54, 64, nil, true)))
	if ret != tcShot {
		t.Errorf("udp 54 to pod2: return %d, want drop", ret)
	}
}
