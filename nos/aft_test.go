package nos

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestAFTSubscriptionCoalesces: a subscriber that does not read holds one
// key per changed item however often it changes, in the order items first
// changed; keys of VRFs it did not ask for never reach it; after Close,
// changes reach it no more.
func TestAFTSubscriptionCoalesces(t *testing.T) {
	var a AFT
	sub := a.Subscribe(func(vrf string) bool { return vrf == "red" }, false)
	key := func(vrf, p string) AFTKey {
		k, ok := AFTEntryKey(vrf, netip.MustParsePrefix(p))
		if !ok {
			t.Fatalf("no key for %s", p)
		}
		return k
	}
	r1, r2, b1 := key("red", "10.0.0.0/24"), key("red", "10.0.1.0/24"), key("blue", "10.0.0.0/24")
	group := AFTKey{VRF: "red", Kind: AFTGroup, ID: 7}
	for range 1000 {
		a.Changed([]AFTKey{group, r1, b1, r2})
	}
	select {
	case <-sub.Ready():
	default:
		t.Fatal("no signal after changes")
	}
	got, synced := sub.Take(10, nil)
	if !synced {
		t.Error("a subscription without initial keys is not synced")
	}
	if want := []AFTKey{group, r1, r2}; !slices.Equal(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	if got, _ := sub.Take(10, nil); len(got) != 0 {
		t.Fatalf("took %v again", got)
	}
	if got := r2.Prefix(); got != netip.MustParsePrefix("10.0.1.0/24") {
		t.Errorf("prefix of the key is %v", got)
	}
	// A key taken is queued again by its next change.
	a.Changed([]AFTKey{r1})
	if got, _ := sub.Take(10, nil); !slices.Equal(got, []AFTKey{r1}) {
		t.Fatalf("took %v, want %v", got, []AFTKey{r1})
	}
	sub.Close()
	a.Changed([]AFTKey{r1})
	if got, _ := sub.Take(10, nil); len(got) != 0 {
		t.Fatalf("a closed subscription took %v", got)
	}
}

// TestAFTSubscriptionTakesInBatches: Take hands out at most max keys and
// signals again while more wait.
func TestAFTSubscriptionTakesInBatches(t *testing.T) {
	var a AFT
	sub := a.Subscribe(nil, false)
	defer sub.Close()
	var keys []AFTKey
	for i := range 2500 {
		keys = append(keys, AFTKey{VRF: "red", Kind: AFTNextHop, ID: uint64(i + 1)})
	}
	a.Changed(keys)
	var all []AFTKey
	for range 3 {
		<-sub.Ready()
		all, _ = sub.Take(1000, all)
	}
	if !slices.Equal(all, keys) {
		t.Fatalf("took %d keys, want the %d in order", len(all), len(keys))
	}
	select {
	case <-sub.Ready():
		t.Fatal("signalled with nothing waiting")
	default:
	}
}

// keysOnly is an AFT source that has keys and no values: enough for the
// queue, which hands out keys only.
type keysOnly []AFTKey

func (k keysOnly) AFTKeys(want func(string) bool, out []AFTKey) []AFTKey {
	for _, key := range k {
		if want(key.VRF) {
			out = append(out, key)
		}
	}
	return out
}

func (keysOnly) AFTLookup(keys []AFTKey, out []AFTItem) []AFTItem {
	for _, key := range keys {
		out = append(out, AFTItem{Key: key})
	}
	return out
}

// TestAFTChangeDuringInitialSync: a change that arrives while the initial
// keys are still being taken is signalled once they are all out, so a
// reader that takes only when signalled never stalls with keys waiting
// (the way an initial sync of a large table ends while BGP still imports).
func TestAFTChangeDuringInitialSync(t *testing.T) {
	var a AFT
	var table keysOnly
	for i := range 2500 {
		table = append(table, AFTKey{VRF: "red", Kind: AFTNextHop, ID: uint64(i + 1)})
	}
	a.SetSource(table)
	sub := a.Subscribe(nil, true)
	defer sub.Close()
	changed := AFTKey{VRF: "red", Kind: AFTGroup, ID: 9}
	var initial []AFTKey
	for i := 0; ; i++ {
		select {
		case <-sub.Ready():
		default:
			t.Fatalf("no signal after %d initial keys, with %d of them and a change waiting", len(initial), len(table)-len(initial))
		}
		keys, synced := sub.Take(1000, nil)
		if synced {
			if !slices.Equal(keys, []AFTKey{changed}) {
				t.Fatalf("after the initial keys took %v, want the change", keys)
			}
			break
		}
		initial = append(initial, keys...)
		if i == 0 {
			a.Changed([]AFTKey{changed})
		}
	}
	if !slices.Equal(initial, table) {
		t.Fatalf("initial sync took %d keys, want the table's %d", len(initial), len(table))
	}
}

// TestAFTChangedLeavesWorkToReader: Changed, which the dataplane calls
// while it holds its lock in the middle of programming routes, neither
// filters nor coalesces keys for a subscriber (it does not even call the
// subscriber's VRF filter): the subscriber does that when it takes them,
// on its own time.
func TestAFTChangedLeavesWorkToReader(t *testing.T) {
	var a AFT
	var calls atomic.Int64
	sub := a.Subscribe(func(vrf string) bool { calls.Add(1); return vrf == "red" }, false)
	defer sub.Close()
	var keys, red []AFTKey
	for i := range 1000 {
		r := AFTKey{VRF: "red", Kind: AFTEntry, ID: uint64(i + 1)}
		keys = append(keys, r, AFTKey{VRF: "blue", Kind: AFTEntry, ID: uint64(i + 1)}, r)
		red = append(red, r)
	}
	a.Changed(keys)
	if n := calls.Load(); n != 0 {
		t.Fatalf("Changed ran the subscriber's filter on %d keys", n)
	}
	<-sub.Ready()
	if got, _ := sub.Take(5000, nil); !slices.Equal(got, red) {
		t.Fatalf("took %d keys, want the %d of red once each, in order", len(got), len(red))
	}
}

// TestAFTInboxBounded: a subscriber that stops taking holds a bounded
// number of keys however many changes come: once its inbox passes
// aftInboxMax, Changed coalesces it.
func TestAFTInboxBounded(t *testing.T) {
	old := aftInboxMax
	aftInboxMax = 100
	t.Cleanup(func() { aftInboxMax = old })
	var a AFT
	sub := a.Subscribe(nil, false)
	defer sub.Close()
	var items []AFTKey
	for i := range 30 {
		items = append(items, AFTKey{VRF: "red", Kind: AFTNextHop, ID: uint64(i + 1)})
	}
	for range 1000 {
		a.Changed(items)
	}
	sub.mu.Lock()
	held := len(sub.inbox) + len(sub.queue) - sub.head
	sub.mu.Unlock()
	if held > aftInboxMax+len(items) {
		t.Fatalf("a subscriber that never took holds %d keys for %d items", held, len(items))
	}
	if got, _ := sub.Take(1000, nil); !slices.Equal(got, items) {
		t.Fatalf("took %v, want each item once", got)
	}
}

// TestAFTPause: a reader pauses aftYield times the time it worked (at
// most aftYieldMax) while the producer is programming, and not at all
// before the first change or once changes stop.
func TestAFTPause(t *testing.T) {
	var a AFT
	if d := a.Pause(time.Millisecond); d != 0 {
		t.Errorf("pause %v before any change", d)
	}
	a.Changed([]AFTKey{{VRF: "red", Kind: AFTEntry, ID: 1}})
	now := aftClock()
	if d := a.pauseAt(time.Millisecond, now); d != aftYield*time.Millisecond {
		t.Errorf("pause %v while programming after 1ms of work, want %v", d, aftYield*time.Millisecond)
	}
	if d := a.pauseAt(time.Second, now); d != aftYieldMax {
		t.Errorf("pause %v after 1s of work, want at most %v", d, aftYieldMax)
	}
	if d := a.pauseAt(time.Millisecond, now+int64(aftBusy)); d != 0 {
		t.Errorf("pause %v once programming stopped", d)
	}
}

// TestAFTSortsOnlyWhatIsTaken: while a reader works through a burst of
// changes in batches, only the keys of the batch it takes are sorted out
// of the inbox (the set of waiting keys stays the size of a batch, not of
// the burst), and every key still comes out once, in order.
func TestAFTSortsOnlyWhatIsTaken(t *testing.T) {
	var a AFT
	sub := a.Subscribe(nil, false)
	defer sub.Close()
	var keys []AFTKey
	for i := range 10000 {
		keys = append(keys, AFTKey{VRF: "red", Kind: AFTEntry, ID: uint64(i + 1)})
	}
	a.Changed(keys)
	var all []AFTKey
	for len(all) < len(keys) {
		<-sub.Ready()
		all, _ = sub.Take(100, all)
		sub.mu.Lock()
		waiting := len(sub.pending)
		sub.mu.Unlock()
		if waiting != 0 {
			t.Fatalf("%d keys sorted and waiting after a take of 100 from a burst of %d", waiting, len(keys))
		}
	}
	if !slices.Equal(all, keys) {
		t.Fatalf("took %d keys, want the %d in order", len(all), len(keys))
	}
}

// TestAFTLookupDoesNotWaitForChanged: a reader's lookup does not take the
// lock Changed holds while it fills every subscriber's inbox (the
// producer calls Changed in the middle of programming).
func TestAFTLookupDoesNotWaitForChanged(t *testing.T) {
	var a AFT
	key := AFTKey{VRF: "red", Kind: AFTNextHop, ID: 1}
	a.SetSource(keysOnly{key})
	a.SetOrigins(func(items []AFTItem) {
		for i := range items {
			items[i].Interface = "named"
		}
	})
	a.mu.Lock() // as Changed holds it
	defer a.mu.Unlock()
	got := make(chan []AFTItem, 1)
	go func() { got <- a.Lookup(a.Keys(nil, nil), nil) }()
	select {
	case items := <-got:
		if len(items) != 1 || items[0].Key != key || items[0].Interface != "named" {
			t.Fatalf("looked up %+v, want %v named by the origins", items, key)
		}
	case <-time.After(time.Minute):
		t.Fatal("a lookup waited for the lock Changed holds")
	}
}
