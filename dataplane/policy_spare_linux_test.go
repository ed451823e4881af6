package dataplane

import (
	"encoding/binary"
	"testing"
)

// TestPolicyChangeRewritesSpare: a change writes the new attachment over
// a retired one (a spare PrunePolicy kept), changing only what differs;
// what the spare held and the new one does not (rules, prefixes, source
// ports) is gone, and packets are classified by the new policy alone.
func TestPolicyChangeRewritesSpare(t *testing.T) {
	e := newPacketEnv(t)
	a := &Attachment{Rules: []PolicyRule{
		{Destinations: pfx("10.1.0.3/32"), Protocol: 17, DestinationPorts: PortRange{53, 53}, Action: PolicyAccept, Entry: "a/1"},
		{Sources: pfx("10.1.0.0/24"), Protocol: 17, DestinationPorts: PortRange{54, 60}, Action: PolicyAccept, Entry: "a/2"},
		{Protocol: 6, SourcePorts: PortRange{1000, 1100}, Action: PolicyAccept, Entry: "a/3"},
	}}
	b := &Attachment{Rules: []PolicyRule{
		{Protocol: 17, DestinationPorts: PortRange{7, 7}, Action: PolicyDrop, Entry: "b/1"},
		{Protocol: 17, Action: PolicyAccept, Entry: "b/2"},
		{Protocol: 1, Action: PolicyAccept, Entry: "b/3"},
	}}
	c := &Attachment{Rules: []PolicyRule{
		{Destinations: pfx("10.1.0.3/32"), Protocol: 17, DestinationPorts: PortRange{54, 54}, Action: PolicyDrop, Entry: "c/1"},
		{Protocol: 17, Action: PolicyAccept, Entry: "c/2"},
	}}
	set := func(att *Attachment) {
		t.Helper()
		must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: att}}}))
		must(t, e.d.PrunePolicy())
	}
	set(a)
	idA := e.d.pol.byPrint[a.fingerprint()].id
	set(b)
	set(c)
	pc := e.d.pol.byPrint[c.fingerprint()]
	if pc.id != idA {
		t.Fatalf("c written under id %d, want the spare's %d", pc.id, idA)
	}
	for _, p := range []struct {
		name string
		pkt  []byte
		pass bool
	}{
		{"udp 53", udpPkt(pod1Addr, 2001, pod2Addr, 53, 64, nil, true), true},
		{"udp 54 (c drops)", udpPkt(pod1Addr, 2002, pod2Addr, 54, 64, nil, true), false},
		{"udp 55", udpPkt(pod1Addr, 2003, pod2Addr, 55, 64, nil, true), true},
		{"tcp from port 1050 (only a accepted it)", tcpPkt(pod1Addr, 1050, pod2Addr, 80, tcpSYN, 64, nil), false},
	} {
		ret, _ := run(t, e.d.progs.PodIngress, fromPod1(p.pkt))
		if pass := ret == tcRedirect; pass != p.pass {
			t.Errorf("%s: return %d, want pass=%v", p.name, ret, p.pass)
		}
	}
	// The maps hold exactly c's classifier under the id.
	for _, dim := range e.d.polDims(pc.c) {
		n := 0
		var k polLPMKey
		var v polRef
		it := dim.m.Iterate()
		for it.Next(&k, &v) {
			if binary.BigEndian.Uint32(k[4:8]) != pc.id {
				continue
			}
			n++
			// The bitmap is the one c's classifier has at that prefix.
			var dk dimKey
			if dim.m == e.d.maps.PolSrc || dim.m == e.d.maps.PolDst {
				dk = dimKey{value: binary.BigEndian.Uint32(k[8:12]), bits: uint8(binary.LittleEndian.Uint32(k[0:4]) - 32)}
			} else {
				dk = dimKey{value: uint32(k[8])<<16 | uint32(k[9])<<8 | uint32(k[10]), bits: uint8(binary.LittleEndian.Uint32(k[0:4]) - 32)}
			}
			var want polBits
			dim.d.bitsOf(dk, &want)
			got, err := v.bits(func(i uint32) (uint64, error) {
				var w uint64
				return w, e.d.maps.PolWords.Lookup(i, &w)
			})
			must(t, err)
			if got != want {
				t.Errorf("%s: prefix %+v holds another bitmap than c's", dim.m, dk)
			}
		}
		must(t, it.Err())
		if n != len(dim.d.rules) {
			t.Errorf("%s: %d entries under id %d, want %d", dim.m, n, pc.id, len(dim.d.rules))
		}
	}
	var pa polAttachment
	must(t, e.d.maps.PolAttach.Lookup(pc.id, &pa))
	for i := range c.Rules {
		var r polRule
		must(t, e.d.maps.PolRules.Lookup(pa.RuleBase+uint32(i), &r))
		if r != pc.vals[i] || r.Action == 0 {
			t.Errorf("rule %d at %d: %+v, want %+v", i, pa.RuleBase+uint32(i), r, pc.vals[i])
		}
	}
	if pa.HasSport != 0 || pa.Rules != 2 {
		t.Errorf("attachment %d: %+v, want 2 rules and no source ports", pc.id, pa)
	}
}
