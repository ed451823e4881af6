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

// fibWatch subscribes to f and collects batches; every batch must name a
// route at most once.
type fibWatch struct {
	t       *testing.T
	mu      sync.Mutex
	state   map[RouteKey][]NextHop
	batches int
	hold    chan struct{} // when set, the first batch waits for it
	got     chan struct{}
}

func watchFIB(t *testing.T, f *FIB, hold chan struct{}) *fibWatch {
	w := &fibWatch{t: t, state: map[RouteKey][]NextHop{}, hold: hold, got: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go f.Subscribe(ctx, func(b []RouteChange) {
		if w.hold != nil {
			<-w.hold
			w.hold = nil
		}
		w.mu.Lock()
		seen := map[RouteKey]bool{}
		for _, c := range b {
			if seen[c.RouteKey] {
				w.t.Errorf("a batch of %d names %v twice", len(b), c.RouteKey)
			}
			seen[c.RouteKey] = true
			if c.Deleted {
				delete(w.state, c.RouteKey)
			} else {
				w.state[c.RouteKey] = c.NextHops
			}
		}
		w.batches++
		w.mu.Unlock()
		select {
		case w.got <- struct{}{}:
		default:
		}
	})
	return w
}

// until waits for cond on the subscriber's state.
func (w *fibWatch) until(cond func(map[RouteKey][]NextHop) bool) {
	w.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		w.mu.Lock()
		ok := cond(w.state)
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.got:
		case <-deadline:
			w.t.Fatalf("timed out; subscriber has %v", w.state)
		}
	}
}

func label(l uint32) []NextHop {
	return []NextHop{{Endpoint: netip.MustParseAddr("192.0.2.1"), Label: l, Encap: EncapMPLSoUDP}}
}

// TestFIBRepeatsInOneBatch: a batch that names a route twice leaves the
// last change, in the FIB and for subscribers, whatever the order of sets
// and deletes.
func TestFIBRepeatsInOneBatch(t *testing.T) {
	f := NewFIB()
	key := func(s string) RouteKey { return RouteKey{VRF: "red", Prefix: netip.MustParsePrefix(s)} }
	set := func(k string, l uint32) RouteChange {
		return RouteChange{Route: Route{RouteKey: key(k), NextHops: label(l)}}
	}
	del := func(k string) RouteChange { return RouteChange{Route: Route{RouteKey: key(k)}, Deleted: true} }
	f.Update([]RouteChange{set("10.0.0.2/32", 100), set("10.0.0.3/32", 100)})
	w := watchFIB(t, f, nil)
	w.until(func(s map[RouteKey][]NextHop) bool { return len(s) == 2 })

	f.Update([]RouteChange{
		set("10.0.0.1/32", 101), set("10.0.0.1/32", 102), // set, set
		del("10.0.0.2/32"), set("10.0.0.2/32", 103), // delete, set
		set("10.0.0.3/32", 104), del("10.0.0.3/32"), // set, delete
		set("2001:db8::/64", 105), set("2001:db8::/64", 106), // not IPv4
	})
	want := map[string]uint32{"10.0.0.1/32": 102, "10.0.0.2/32": 103, "2001:db8::/64": 106}
	check := func(s map[RouteKey][]NextHop) bool {
		if len(s) != len(want) {
			return false
		}
		for k, l := range want {
			if nh := s[key(k)]; len(nh) != 1 || nh[0].Label != l {
				return false
			}
		}
		return true
	}
	w.until(check)
	for k, l := range want {
		if nh, ok := f.Lookup(key(k)); !ok || nh[0].Label != l {
			t.Errorf("Lookup %s = %v, want label %d", k, nh, l)
		}
	}
	if _, ok := f.Lookup(key("10.0.0.3/32")); ok {
		t.Errorf("10.0.0.3/32 set then deleted in one batch is still there")
	}
	if n, per := f.Len(); n != 3 || per["red"] != 3 {
		t.Errorf("Len = %d %v", n, per)
	}
}

// TestFIBSlowSubscriber: batches that pile up while a subscriber is busy
// are merged (each route once, its latest change), and a fast subscriber
// sharing the same batches sees them unchanged.
func TestFIBSlowSubscriber(t *testing.T) {
	f := NewFIB()
	hold := make(chan struct{})
	slow := watchFIB(t, f, hold)
	fast := watchFIB(t, f, nil)
	k := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.0.0.1/32")}
	for i := range 100 {
		other := RouteKey{VRF: "blue", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 32)}
		f.Update([]RouteChange{{Route: Route{RouteKey: k, NextHops: label(uint32(1000 + i))}}, {Route: Route{RouteKey: other, NextHops: label(7)}}})
		fast.until(func(s map[RouteKey][]NextHop) bool { return len(s[k]) == 1 && s[k][0].Label == uint32(1000+i) })
	}
	f.Update([]RouteChange{{Route: Route{RouteKey: k}, Deleted: true}})
	close(hold)
	slow.until(func(s map[RouteKey][]NextHop) bool { _, ok := s[k]; return len(s) == 100 && !ok })
	fast.until(func(s map[RouteKey][]NextHop) bool { _, ok := s[k]; return len(s) == 100 && !ok })
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.batches > 3 {
		t.Errorf("slow subscriber got %d batches for 101 updates; they should have been merged", slow.batches)
	}
}
