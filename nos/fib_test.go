package nos

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestFIBSnapshotThenCoalescedChanges(t *testing.T) {
	f := NewFIB()
	k1 := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.5/32")}
	k2 := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.6/32")}
	nh := []NextHop{{Endpoint: netip.MustParseAddr("192.0.2.1"), Label: 100000, Encap: EncapMPLSoUDP}}
	f.Update([]RouteChange{{Route: Route{RouteKey: k1, NextHops: nh}}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[RouteKey]RouteChange{}
	got := make(chan struct{}, 16)
	go f.Subscribe(ctx, func(b []RouteChange) {
		mu.Lock()
		for _, c := range b {
			seen[c.RouteKey] = c
		}
		mu.Unlock()
		got <- struct{}{}
	})
	wait := func(cond func() bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			select {
			case <-got:
			case <-deadline:
				t.Fatal("timed out waiting for FIB changes")
			}
		}
	}
	wait(func() bool { _, ok := seen[k1]; return ok })
	f.Update([]RouteChange{{Route: Route{RouteKey: k2, NextHops: nh}}, {Route: Route{RouteKey: k1}, Deleted: true}})
	wait(func() bool { return seen[k1].Deleted && len(seen[k2].NextHops) == 1 })
	if n, per := f.Len(); n != 1 || per["red"] != 1 {
		t.Fatalf("Len = %d %v", n, per)
	}
	// Deleting what is not there is not a change.
	f.Update([]RouteChange{{Route: Route{RouteKey: k1}, Deleted: true}})
	if _, ok := f.Lookup(k1); ok {
		t.Fatal("deleted route still there")
	}
}

func TestLabelsStableAndReleased(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLabels(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.VRF("red")
	b, _ := l.VRF("blue")
	p := netip.MustParsePrefix("10.1.0.5/32")
	c, _ := l.Prefix("red", p)
	if a == b || b == c || a == c || a < FirstLabel {
		t.Fatalf("labels not distinct: %d %d %d", a, b, c)
	}
	if o, ok := l.Owner(c); !ok || o.VRF != "red" || o.Prefix != p {
		t.Fatalf("owner of %d = %+v", c, o)
	}
	st.Close()
	st, _ = OpenStore(dir)
	defer st.Close()
	l, _ = newLabels(st.DB())
	if a2, _ := l.VRF("red"); a2 != a {
		t.Fatalf("label after reopen = %d, want %d", a2, a)
	}
	if err := l.ReleaseVRF("red"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Owner(c); ok {
		t.Fatal("per-prefix label survived ReleaseVRF")
	}
	if len(l.All()) != 1 {
		t.Fatalf("All = %v", l.All())
	}
}
