package bgp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/isthmus-net/isthmus/nos"
)

// aftItems returns present BGP entries of a VRF for prefixes.
func aftItems(t *testing.T, vrf string, prefixes ...string) []nos.AFTItem {
	t.Helper()
	var items []nos.AFTItem
	for _, p := range prefixes {
		k, ok := nos.AFTEntryKey(vrf, netip.MustParsePrefix(p))
		if !ok {
			t.Fatalf("no AFT key for %s", p)
		}
		items = append(items, nos.AFTItem{Key: k, Present: true, Origin: nos.AFTOriginBGP})
	}
	return items
}

// TestAFTOrigins: an entry's origin names the RDs and route targets of the
// paths import selects for its VRF (sorted, unique; a less preferred path
// is not named), an entry of another origin, a VRF or prefix import does
// not have gets none, and a path that changes its route targets is named
// by its new ones.
func TestAFTOrigins(t *testing.T) {
	r := newTestRIB(t)
	o := newAFTOrigins(r)
	r.update([]*apiutil.Path{
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.0.0/24", nexthop: "10.0.0.2", label: 100, rts: []string{"65000:1", "65000:9"}}.build(t),
		rcvPath{peer: "10.0.0.3", rd: "10.0.0.3:1", prefix: "10.9.0.0/24", nexthop: "10.0.0.3", label: 101, rts: []string{"65000:1"}}.build(t),
		rcvPath{peer: "10.0.0.4", rd: "10.0.0.4:1", prefix: "10.9.0.0/24", nexthop: "10.0.0.4", label: 102, rts: []string{"65000:1", "65000:7"}, localPref: 50}.build(t),
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.1.0/24", nexthop: "10.0.0.2", label: 100, rts: []string{"65000:1"}}.build(t),
		rcvPath{peer: "10.0.0.3", rd: "10.0.0.3:2", prefix: "10.9.1.0/24", nexthop: "10.0.0.3", label: 103, rts: []string{"65000:2"}}.build(t),
	})
	items := aftItems(t, "red", "10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24")
	items = append(items, aftItems(t, "blue", "10.9.1.0/24")...)
	items = append(items, aftItems(t, "green", "10.9.1.0/24")...)
	static := aftItems(t, "red", "10.9.1.0/24")[0]
	static.Origin = nos.AFTOriginStatic
	items = append(items, static)
	o.fill(items)
	type origin struct{ RDs, RTs []string }
	var got []origin
	for _, it := range items {
		got = append(got, origin{it.RDs, it.RTs})
	}
	want := []origin{
		{[]string{"10.0.0.2:1", "10.0.0.3:1"}, []string{"65000:1", "65000:9"}},
		{[]string{"10.0.0.2:1"}, []string{"65000:1"}},
		{}, // no such prefix
		{[]string{"10.0.0.3:2"}, []string{"65000:2"}},
		{}, // no such VRF
		{}, // not BGP
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("origins (-want +got):\n%s", d)
	}

	r.update([]*apiutil.Path{
		rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: "10.9.1.0/24", nexthop: "10.0.0.2", label: 100, rts: []string{"65000:1", "65000:5"}}.build(t),
	})
	items = aftItems(t, "red", "10.9.1.0/24")
	o.fill(items)
	if d := cmp.Diff(origin{[]string{"10.0.0.2:1"}, []string{"65000:1", "65000:5"}}, origin{items[0].RDs, items[0].RTs}); d != "" {
		t.Errorf("origin after the path's route targets changed (-want +got):\n%s", d)
	}
}

// TestAFTOriginsShareNames: entries whose origin is one path with the same
// RD and route targets cost no allocation each: a reader of a million
// entries streams while BGP imports, and its garbage is collected on the
// import's CPU too.
func TestAFTOriginsShareNames(t *testing.T) {
	r := newTestRIB(t)
	o := newAFTOrigins(r)
	var paths []*apiutil.Path
	var prefixes []string
	for i := range 1000 {
		p := fmt.Sprintf("10.%d.%d.0/24", 10+i/256, i%256)
		prefixes = append(prefixes, p)
		paths = append(paths, rcvPath{peer: "10.0.0.2", rd: "10.0.0.2:1", prefix: p, nexthop: "10.0.0.2", label: 100, rts: []string{"65000:1", "65000:9"}}.build(t))
	}
	r.update(paths)
	items := aftItems(t, "red", prefixes...)
	allocs := testing.AllocsPerRun(10, func() {
		for i := range items {
			items[i].RDs, items[i].RTs = nil, nil
		}
		o.fill(items)
	})
	for _, it := range items {
		if len(it.RDs) != 1 || it.RDs[0] != "10.0.0.2:1" || len(it.RTs) != 2 {
			t.Fatalf("origin of %v: RDs %v, RTs %v", it.Key.Prefix(), it.RDs, it.RTs)
		}
	}
	// A few for the batch (the copied origins grow by appending), none
	// per entry.
	if allocs > 32 {
		t.Errorf("naming the origins of %d entries took %.0f allocations, want none per entry", len(items), allocs)
	}
}
