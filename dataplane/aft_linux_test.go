package dataplane

import (
	"cmp"
	"net/netip"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/isthmus-net/isthmus/nos"
)

// TestAFTReadsWithoutProgrammingLock: the AFT's readers (a subscriber's
// keys and lookups, the entry count) never wait for the lock programming
// holds across its map updates, and read what the last flush recorded:
// a learnt route's entry, group and next hop, a pod's entry with its
// interface, and, once the route is gone, no entry, group or next hop.
func TestAFTReadsWithoutProgrammingLock(t *testing.T) {
	r := New(ReconcilerConfig{})
	learnt := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.9.0.0/24")}
	pod := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.5/32")}
	hop := NextHop{Endpoint: netip.MustParseAddr("192.0.2.7"), Label: 100, Encap: nos.EncapMPLSoUDP}

	// read runs the readers while the test holds r.mu, as programming does.
	read := func() []nos.AFTItem {
		t.Helper()
		r.mu.Lock()
		defer r.mu.Unlock()
		got := make(chan []nos.AFTItem, 1)
		go func() {
			keys := r.AFTKeys(func(string) bool { return true }, nil)
			keys = append(keys, mustAFTKey(t, learnt), mustAFTKey(t, pod)) // asked for even when gone
			if n := r.AFTEntries(); n > len(keys) {
				t.Errorf("%d entries but %d keys", n, len(keys))
			}
			got <- r.AFTLookup(keys, nil)
		}()
		select {
		case items := <-got:
			return items
		case <-time.After(time.Minute):
			t.Fatal("the AFT's readers waited for the programming lock")
			return nil
		}
	}

	r.mu.Lock()
	r.remote[learnt] = []NextHop{hop}
	r.local[pod] = 42
	r.ifindex["pod0"] = 42
	r.aftTouch(learnt)
	r.aftTouch(pod)
	r.aftFlush()
	r.mu.Unlock()

	items := read()
	type item struct {
		kind      nos.AFTKind
		present   bool
		origin    nos.AFTOrigin
		hop       NextHop
		iface     string
		nexthops  int
		groupHops []NextHop
	}
	byID := map[nos.AFTKey]nos.AFTItem{}
	for _, it := range items {
		byID[it.Key] = it
	}
	// Follow each entry to its group and next hops.
	follow := func(k nos.AFTKey) item {
		it := byID[k]
		out := item{kind: it.Key.Kind, present: it.Present, origin: it.Origin}
		if !it.Present {
			return out
		}
		g, ok := byID[nos.AFTKey{VRF: k.VRF, Kind: nos.AFTGroup, ID: it.Group}]
		if !ok || !g.Present {
			t.Fatalf("entry %v: group %d not in the table", k.Prefix(), it.Group)
		}
		out.nexthops = len(g.NextHops)
		for _, id := range g.NextHops {
			h, ok := byID[nos.AFTKey{VRF: k.VRF, Kind: nos.AFTNextHop, ID: id}]
			if !ok || !h.Present {
				t.Fatalf("group %d: next hop %d not in the table", it.Group, id)
			}
			out.hop, out.iface = h.Hop, h.Interface
		}
		return out
	}
	want := []item{
		{kind: nos.AFTEntry, present: true, origin: nos.AFTOriginBGP, hop: hop, nexthops: 1},
		{kind: nos.AFTEntry, present: true, origin: nos.AFTOriginPod, iface: "pod0", nexthops: 1},
	}
	got := []item{follow(mustAFTKey(t, learnt)), follow(mustAFTKey(t, pod))}
	if d := gocmp.Diff(want, got, gocmp.AllowUnexported(item{}), gocmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Fatalf("AFT (-want +got):\n%s", d)
	}
	if n := r.AFTEntries(); n != 2 {
		t.Errorf("AFTEntries = %d, want 2", n)
	}

	r.mu.Lock()
	delete(r.remote, learnt)
	r.aftTouch(learnt)
	r.aftFlush()
	r.mu.Unlock()
	items = read()
	present := slices.DeleteFunc(slices.Clone(items), func(it nos.AFTItem) bool { return !it.Present })
	slices.SortFunc(present, func(a, b nos.AFTItem) int { return cmp.Compare(a.Key.ID, b.Key.ID) })
	present = slices.CompactFunc(present, func(a, b nos.AFTItem) bool { return a.Key == b.Key })
	// The pod's entry, its group and its next hop are left.
	if len(present) != 3 || byKind(present, nos.AFTEntry) != 1 || byKind(present, nos.AFTGroup) != 1 || byKind(present, nos.AFTNextHop) != 1 {
		t.Fatalf("after the learnt route went the table holds %+v, want the pod's entry, group and next hop", present)
	}
	if n := r.AFTEntries(); n != 1 {
		t.Errorf("AFTEntries = %d, want 1", n)
	}
}

func mustAFTKey(t *testing.T, k RouteKey) nos.AFTKey {
	t.Helper()
	key, ok := nos.AFTEntryKey(k.VRF, k.Prefix)
	if !ok {
		t.Fatalf("no AFT key for %v", k.Prefix)
	}
	return key
}

func byKind(items []nos.AFTItem, kind nos.AFTKind) int {
	n := 0
	for _, it := range items {
		if it.Key.Kind == kind {
			n++
		}
	}
	return n
}
