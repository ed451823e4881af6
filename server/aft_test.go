package server

import (
	"net/netip"
	"testing"

	"github.com/isthmus-net/isthmus/nos"
)

// TestAFTLeavesReachSubscriptions: the leaves of an entry match a
// subscription to one of them, its delete reaches a subscription to any
// leaf below it, and an entry of another VRF or prefix reaches neither;
// queries that cannot match the AFT are left out, and the VRFs of the
// rest filter what the AFT queues.
func TestAFTLeavesReachSubscriptions(t *testing.T) {
	key, _ := nos.AFTEntryKey("red", netip.MustParsePrefix("10.0.0.0/24"))
	other, _ := nos.AFTEntryKey("blue", netip.MustParsePrefix("10.0.0.0/24"))
	leafQ := query{"network-instances", "network-instance", "red", "afts", "ipv4-unicast", "ipv4-entry", "10.0.0.0/24", "state", "next-hop-group"}
	qs, want := aftQueries([]query{leafQ, {"network-instances", "network-instance", "red", "state"}})
	if len(qs) != 1 || !want("red") || want("blue") {
		t.Fatalf("aft queries %v, red %v, blue %v", qs, want("red"), want("blue"))
	}
	matched := 0
	for _, l := range aftLeaves(nos.AFTItem{Key: key, Present: true, Group: 3, Origin: nos.AFTOriginBGP}) {
		if l.wanted(qs) {
			matched++
		}
	}
	if matched != 1 {
		t.Errorf("%d leaves match a subscription to one leaf, want 1", matched)
	}
	del := aftLeaves(nos.AFTItem{Key: key})
	if len(del) != 1 || del[0].val != nil || !del[0].wanted(qs) {
		t.Errorf("the entry's delete %v does not reach a subscription to its leaf", del)
	}
	if d := aftLeaves(nos.AFTItem{Key: other}); d[0].wanted(qs) {
		t.Error("a delete in blue reaches a subscription in red")
	}
	if _, all := aftQueries([]query{{}}); !all("any") {
		t.Error("a subscription to everything does not take every VRF's AFT")
	}
}
