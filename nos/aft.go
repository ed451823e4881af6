package nos

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The AFT (abstract forwarding table) is the forwarding table as the
// dataplane programmed it, per VRF: entries (prefix → next-hop group),
// next-hop groups and next hops. It is not copied into the state tree:
// the dataplane registers itself as the AFT's source, tells the AFT which
// items changed, and readers (the gNMI server) look the current values up
// at request time. Each subscriber has its own coalescing queue of changed
// keys, so a slow reader never makes the producer wait and never holds
// more than one pending change per item.
//
// The producer calls Changed while it holds its own lock, in the middle
// of programming a batch of routes, so Changed does no per-key work for a
// subscriber: it appends the keys to the subscriber's inbox, and the
// reader sorts them into its queue (VRF filter, one key per item) when it
// takes them. Only an inbox that grows far beyond what the reader has
// queued (a reader that has stopped taking) is coalesced by the producer,
// so that memory stays bounded. Readers also yield the CPU while the
// table is being programmed (Pace): a subscriber then takes a small share
// of a CPU and catches up once programming is done.

// AFTKind tells entries, next-hop groups and next hops apart.
type AFTKind uint8

// Kinds of AFT items.
const (
	AFTEntry AFTKind = iota + 1
	AFTGroup
	AFTNextHop
)

// AFTOrigin is where an entry comes from.
type AFTOrigin uint8

// Origins of AFT entries.
const (
	AFTOriginBGP AFTOrigin = iota + 1
	AFTOriginStatic
	AFTOriginPod
)

// String returns the YANG name of the origin.
func (o AFTOrigin) String() string {
	switch o {
	case AFTOriginBGP:
		return "BGP"
	case AFTOriginStatic:
		return "STATIC"
	case AFTOriginPod:
		return "POD"
	}
	return ""
}

// AFTKey names one AFT item: an entry by its IPv4 prefix (ID holds the
// address and length, see AFTEntryKey), a group or a next hop by its
// identifier.
type AFTKey struct {
	VRF  string
	Kind AFTKind
	ID   uint64
}

// AFTEntryKey returns the key of the entry for an IPv4 prefix, and false
// for any other prefix.
func AFTEntryKey(vrf string, p netip.Prefix) (AFTKey, bool) {
	k, ok := v4Key(p.Masked())
	return AFTKey{VRF: vrf, Kind: AFTEntry, ID: k}, ok
}

// Prefix returns the prefix of an entry's key.
func (k AFTKey) Prefix() netip.Prefix { return v4Prefix(k.ID) }

// AFTItem is the current value of an AFT item. Present is false for an
// item that is gone (a delete). Its slices (RDs, RTs, NextHops) may be
// shared with other items and with the source: readers never change them.
type AFTItem struct {
	Key     AFTKey
	Present bool
	// Entries.
	Origin AFTOrigin
	Group  uint64
	RDs    []string // BGP entries: route distinguishers of the selected paths
	RTs    []string // BGP entries: their route targets
	// Groups: the member next hops.
	NextHops []uint64
	// Next hops: a remote one (Hop), or a local pod interface.
	Hop       NextHop
	Interface string
}

// AFTSource is the producer's programmed view (the dataplane reconciler).
// Both methods may be called from any goroutine, and should not hold up
// the producer's programming while they run.
type AFTSource interface {
	// AFTKeys appends the key of every item of the VRFs for which want
	// returns true.
	AFTKeys(want func(vrf string) bool, out []AFTKey) []AFTKey
	// AFTLookup appends the current value of each key, in order.
	AFTLookup(keys []AFTKey, out []AFTItem) []AFTItem
}

// AFTOrigins fills in the route distinguishers and route targets of the
// BGP entries among items (the BGP reconciler's import). It may be called
// from any goroutine.
type AFTOrigins func(items []AFTItem)

// AFT connects the producer of the forwarding table, the BGP origins of
// its entries and its readers. The zero value is ready to use.
type AFT struct {
	parts     atomic.Pointer[aftParts] // read by readers without mu
	mu        sync.Mutex               // guards subs, and writes of parts
	subs      map[*AFTSubscription]struct{}
	nsubs     atomic.Int32 // len(subs), read without mu by Changed
	changedAt atomic.Int64 // when Changed was last called, in aftClock
}

// aftParts are the AFT's source and origins, replaced as a whole.
type aftParts struct {
	source  AFTSource
	origins AFTOrigins
}

// aftEpoch starts the AFT's monotonic clock.
var aftEpoch = time.Now()

// aftClock returns the nanoseconds since aftEpoch, plus one: 0 is never.
func aftClock() int64 { return int64(time.Since(aftEpoch)) + 1 }

// Pacing of readers while the table is being programmed.
const (
	// aftBusy is how recent a change must be for the producer to count
	// as programming.
	aftBusy = 100 * time.Millisecond
	// aftYield is how long a reader waits, per unit of time it worked,
	// while the producer programs: it takes at most 1/(aftYield+1) of a
	// CPU from programming.
	aftYield = 9
	// aftYieldMax bounds one wait, so that a reader resumes soon after
	// programming stops.
	aftYieldMax = 250 * time.Millisecond
)

// AFT returns the core's forwarding table view.
func (c *Core) AFT() *AFT { return &c.aft }

// SetSource registers the programmed view; nil removes it.
func (a *AFT) SetSource(s AFTSource) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.current()
	p.source = s
	a.parts.Store(&p)
}

// SetOrigins registers the function that names the BGP origins of
// entries; nil removes it.
func (a *AFT) SetOrigins(fn AFTOrigins) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.current()
	p.origins = fn
	a.parts.Store(&p)
}

// current returns the source and origins, without a lock: a reader never
// waits for Changed, which holds mu while it fills the inboxes.
func (a *AFT) current() aftParts {
	if p := a.parts.Load(); p != nil {
		return *p
	}
	return aftParts{}
}

// Keys appends the key of every item of the VRFs want accepts (nil: all),
// or nothing when no source is registered.
func (a *AFT) Keys(want func(vrf string) bool, out []AFTKey) []AFTKey {
	src := a.current().source
	if src == nil {
		return out
	}
	if want == nil {
		want = func(string) bool { return true }
	}
	return src.AFTKeys(want, out)
}

// Lookup appends the current value of each key, with the BGP origins of
// entries filled in.
func (a *AFT) Lookup(keys []AFTKey, out []AFTItem) []AFTItem {
	p := a.current()
	src, origins := p.source, p.origins
	if src == nil {
		for _, k := range keys {
			out = append(out, AFTItem{Key: k})
		}
		return out
	}
	start := len(out)
	out = src.AFTLookup(keys, out)
	if origins != nil {
		origins(out[start:])
	}
	return out
}

// Changed tells every subscriber that the items under keys changed (or
// went). It never blocks and does no per-key work for a subscriber: it
// copies keys into each one's inbox, which the subscriber sorts when it
// takes them. The producer calls it after the maps took the change.
func (a *AFT) Changed(keys []AFTKey) {
	if len(keys) == 0 {
		return
	}
	a.changedAt.Store(aftClock())
	if a.nsubs.Load() == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range a.subs {
		s.add(keys)
	}
}

// Pause returns how long a reader that has just worked for worked on a
// batch should leave the CPU to the producer: while the producer is
// programming (it changed the table in the last aftBusy), aftYield times
// that long, at most aftYieldMax; otherwise 0. A reader that pauses so
// after every batch takes at most 1/(aftYield+1) of a CPU from
// programming.
func (a *AFT) Pause(worked time.Duration) time.Duration {
	return a.pauseAt(worked, aftClock())
}

func (a *AFT) pauseAt(worked time.Duration, now int64) time.Duration {
	last := a.changedAt.Load()
	if last == 0 || time.Duration(now-last) >= aftBusy {
		return 0
	}
	return min(aftYield*worked, aftYieldMax)
}

// Subscribe returns a subscription to the items of the VRFs want accepts
// (nil: all). With initial it starts with the key of every current item
// (the initial sync); it receives the keys of items that change from the
// moment it is made. Close it when done.
func (a *AFT) Subscribe(want func(vrf string) bool, initial bool) *AFTSubscription {
	if want == nil {
		want = func(string) bool { return true }
	}
	s := &AFTSubscription{aft: a, want: want, ready: make(chan struct{}, 1), pending: map[AFTKey]struct{}{}}
	// Registered before the snapshot, so that no change falls between.
	a.mu.Lock()
	if a.subs == nil {
		a.subs = map[*AFTSubscription]struct{}{}
	}
	a.subs[s] = struct{}{}
	a.nsubs.Store(int32(len(a.subs)))
	a.mu.Unlock()
	if initial {
		keys := a.Keys(want, nil)
		s.mu.Lock()
		s.initial = keys
		s.mu.Unlock()
		s.signal()
	}
	return s
}

// AFTSubscription is one reader's queue of changed AFT keys: the initial
// keys first, then every key that changed since it was last taken, each
// at most once while it waits (a change to a key already waiting keeps
// its place). Changes arrive in an inbox, in the order they came, and are
// sorted into the queue as the reader takes them; a bound on the inbox
// keeps what a subscription holds in proportion to the table whatever
// the rate of changes.
type AFTSubscription struct {
	aft   *AFT
	want  func(vrf string) bool
	ready chan struct{} // one token: something to take

	mu      sync.Mutex // guards initial, inbox, pending, queue, head
	initial []AFTKey
	inbox   []AFTKey // keys as Changed gave them, not sorted into queue yet
	pending map[AFTKey]struct{}
	queue   []AFTKey // queue[head:] wait, in the order they changed
	head    int
}

// aftInboxMax is how many keys an inbox holds before the producer sorts
// it itself (when it also holds more than twice the keys queued): a
// burst of N new routes puts N keys there while the reader works through
// them, so only a reader that stopped taking lets it grow that far.
var aftInboxMax = 1 << 22

// Ready is signalled when keys wait to be taken.
func (s *AFTSubscription) Ready() <-chan struct{} { return s.ready }

func (s *AFTSubscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// add puts keys in the inbox; the AFT's mu is held.
func (s *AFTSubscription) add(keys []AFTKey) {
	s.mu.Lock()
	s.inbox = append(s.inbox, keys...)
	if len(s.inbox) > max(aftInboxMax, 2*len(s.pending)) {
		s.sort(-1)
	}
	s.mu.Unlock()
	s.signal()
}

// sort moves keys from the front of the inbox into the queue until need
// keys wait there (need < 0: the whole inbox): those of the VRFs wanted,
// each unless it already waits. Sorting only what is about to be taken
// keeps the set of waiting keys, and its cost, small while a reader
// works through a burst. s.mu is held.
func (s *AFTSubscription) sort(need int) {
	i := 0
	for ; i < len(s.inbox) && (need < 0 || len(s.queue)-s.head < need); i++ {
		k := s.inbox[i]
		if !s.want(k.VRF) {
			continue
		}
		if _, ok := s.pending[k]; ok {
			continue
		}
		s.pending[k] = struct{}{}
		s.queue = append(s.queue, k)
	}
	switch {
	case i < len(s.inbox):
		s.inbox = s.inbox[i:]
	case cap(s.inbox) > aftInboxKeep:
		s.inbox = nil // a burst is over: give its memory back
	default:
		s.inbox = s.inbox[:0]
	}
}

// aftInboxKeep is the most inbox or queue capacity kept once a reader
// has caught up.
const aftInboxKeep = 1 << 16

// Take appends up to max waiting keys to out: the initial keys first,
// then changed ones. synced reports whether the initial keys are all
// taken (the initial sync is complete once they are sent).
func (s *AFTSubscription) Take(max int, out []AFTKey) (keys []AFTKey, synced bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := min(max, len(s.initial)); n > 0 {
		out = append(out, s.initial[:n]...)
		s.initial = s.initial[n:]
		if len(s.initial) == 0 {
			s.initial = nil
		}
		// More initial keys, or changes that came while they were being
		// taken (their own signal may have been spent on an initial batch).
		if len(s.initial) > 0 || len(s.queue) > s.head || len(s.inbox) > 0 {
			s.signal()
		}
		return out, false
	}
	s.sort(max)
	n := min(max, len(s.queue)-s.head)
	for _, k := range s.queue[s.head : s.head+n] {
		delete(s.pending, k)
	}
	out = append(out, s.queue[s.head:s.head+n]...)
	s.head += n
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
		if cap(s.queue) > aftInboxKeep {
			// Caught up after a reader fell behind: give back the queue
			// and the map's buckets (a map never shrinks).
			s.queue, s.pending = nil, map[AFTKey]struct{}{}
		}
	} else if s.head > len(s.queue)/2 {
		s.queue = slices.Delete(s.queue, 0, s.head)
		s.head = 0
	}
	if len(s.queue) > s.head || len(s.inbox) > 0 {
		s.signal()
	}
	return out, true
}

// Close ends the subscription.
func (s *AFTSubscription) Close() {
	a := s.aft
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.subs, s)
	a.nsubs.Store(int32(len(a.subs)))
}
