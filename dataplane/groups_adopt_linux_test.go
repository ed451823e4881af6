package dataplane

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"
)

// TestGroupsAdoptedAfterRestart: a reopened dataplane takes over every
// pinned next-hop group, more than one batch of the array read at Open,
// with the ids and endpoint references the first process had, so routes
// re-added after the restart keep their groups.
func TestGroupsAdoptedAfterRestart(t *testing.T) {
	e := newPacketEnv(t)
	const n = 2500 // groups: two full batches of 1,024 and part of a third
	var routes []Route
	for i := range n {
		routes = append(routes, Route{
			RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))},
			NextHops: []NextHop{{Endpoint: remote2, Label: 10000 + uint32(i), Encap: EncapMPLSoUDP}},
		})
	}
	must(t, e.d.SetRoutes(routes))
	if len(e.d.groups.ids) < n {
		t.Fatalf("%d groups after %d routes with distinct next hops", len(e.d.groups.ids), n)
	}
	d2, err := Open(Config{BPFFS: e.d.Dir(), Logger: quiet})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer d2.Close()
	if !maps.Equal(d2.groups.ids, e.d.groups.ids) {
		t.Errorf("reopened: %d groups, want the %d pinned", len(d2.groups.ids), len(e.d.groups.ids))
	}
	if !maps.Equal(d2.epRefs, e.d.epRefs) {
		t.Errorf("reopened: endpoint references %v, want %v", d2.epRefs, e.d.epRefs)
	}
	for id, g := range e.d.groups.values {
		if d2.groups.values[id] != g {
			t.Fatalf("reopened: group %d is %+v, want %+v", id, d2.groups.values[id], g)
		}
	}
}
