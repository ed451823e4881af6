package nos

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

// Encap is how packets to a next hop are encapsulated.
type Encap uint8

const (
	// EncapMPLSoUDP is RFC 7510 MPLS in UDP (destination port 6635 by default).
	EncapMPLSoUDP Encap = iota + 1
	// EncapMPLSoMPLS is a transport label plus the VPN label over Ethernet.
	EncapMPLSoMPLS
)

// String returns the YANG name of the encapsulation.
func (e Encap) String() string {
	switch e {
	case EncapMPLSoUDP:
		return "MPLS_OVER_UDP"
	case EncapMPLSoMPLS:
		return "MPLS_OVER_MPLS"
	}
	return fmt.Sprintf("encap(%d)", uint8(e))
}

// NextHop is one remote path of a route: the tunnel endpoint (the remote
// host's underlay address), the VPN label it allocated and how to reach it.
type NextHop struct {
	Endpoint netip.Addr
	Label    uint32
	Encap    Encap
}

// RouteKey identifies a route in the FIB.
type RouteKey struct {
	VRF    string
	Prefix netip.Prefix
}

// Route is a FIB entry: a prefix in a VRF and its ECMP set of next hops.
type Route struct {
	RouteKey
	NextHops []NextHop
}

// RouteChange is one FIB change. Deleted changes carry only the key.
type RouteChange struct {
	Route
	Deleted bool
}

// FIB is the table of routes that the control plane learnt for each VRF and
// that the dataplane programs. Producers call Update; consumers call
// Subscribe and receive a snapshot followed by batched changes, each batch
// naming a route at most once. It is safe for concurrent use.
type FIB struct {
	mu   sync.Mutex // guards vrfs, subs, gen, size
	vrfs map[string]*fibVRF
	subs map[*fibSub]struct{}
	gen  uint32 // numbers the Update calls: tells a repeat within one batch
	size int    // routes in all VRFs
}

// fibVRF holds one VRF's routes. IPv4 prefixes, nearly all of them, are
// keyed by a number (address and length), which is hashed and moved about
// as the map grows far more cheaply than a RouteKey.
type fibVRF struct {
	v4    map[uint64]fibEntry
	other map[netip.Prefix]fibEntry
}

// fibEntry is a route's next hops and the Update that last set them.
type fibEntry struct {
	nh  []NextHop
	gen uint32
}

func v4Key(p netip.Prefix) (uint64, bool) {
	if !p.Addr().Is4() || p.Bits() < 0 {
		return 0, false
	}
	a := p.Addr().As4()
	return uint64(a[0])<<32 | uint64(a[1])<<24 | uint64(a[2])<<16 | uint64(a[3])<<8 | uint64(p.Bits()), true
}

func v4Prefix(k uint64) netip.Prefix {
	a := netip.AddrFrom4([4]byte{byte(k >> 32), byte(k >> 24), byte(k >> 16), byte(k >> 8)})
	return netip.PrefixFrom(a, int(k&0xff))
}

func (v *fibVRF) get(p netip.Prefix) (fibEntry, bool) {
	if k, ok := v4Key(p); ok {
		e, ok := v.v4[k]
		return e, ok
	}
	e, ok := v.other[p]
	return e, ok
}

// set stores a route and returns what it replaced.
func (v *fibVRF) set(p netip.Prefix, e fibEntry) (old fibEntry, existed bool) {
	if k, ok := v4Key(p); ok {
		old, existed = v.v4[k]
		v.v4[k] = e
		return old, existed
	}
	old, existed = v.other[p]
	v.other[p] = e
	return old, existed
}

// del deletes a route and returns it.
func (v *fibVRF) del(p netip.Prefix) (old fibEntry, existed bool) {
	if k, ok := v4Key(p); ok {
		if old, existed = v.v4[k]; existed {
			delete(v.v4, k)
		}
		return old, existed
	}
	if old, existed = v.other[p]; existed {
		delete(v.other, p)
	}
	return old, existed
}

func (v *fibVRF) len() int { return len(v.v4) + len(v.other) }

// all calls fn with every route of the VRF.
func (v *fibVRF) all(fn func(netip.Prefix, []NextHop)) {
	for k, e := range v.v4 {
		fn(v4Prefix(k), e.nh)
	}
	for p, e := range v.other {
		fn(p, e.nh)
	}
}

// NewFIB returns an empty FIB.
func NewFIB() *FIB {
	return &FIB{vrfs: make(map[string]*fibVRF), subs: make(map[*fibSub]struct{})}
}

// vrf returns a VRF's table, created when create is set; f.mu is held.
func (f *FIB) vrf(name string, create bool) *fibVRF {
	v := f.vrfs[name]
	if v == nil && create {
		v = &fibVRF{v4: map[uint64]fibEntry{}, other: map[netip.Prefix]fibEntry{}}
		f.vrfs[name] = v
	}
	return v
}

// fibSub is one subscriber's queue. A batch that finds the queue empty is
// queued as it is, shared with the other subscribers (read only: its
// capacity is its length, so an append copies); only when several have
// piled up (the subscriber is slower than the producers) are they copied
// and merged, keeping each route's latest change.
type fibSub struct {
	mu      sync.Mutex    // guards changes, batches, limit
	changes []RouteChange // in arrival order
	batches int           // Update batches in changes
	limit   int           // merge in place when changes grows past this
	wake    chan struct{}
}

// push queues one batch of distinct routes; s.mu is held. fibSize is the
// number of routes in the FIB, which bounds a merged queue.
func (s *fibSub) push(batch []RouteChange, fibSize int) {
	if s.batches == 0 {
		s.changes, s.batches = batch[:len(batch):len(batch)], 1
		return
	}
	s.changes = append(s.changes, batch...)
	s.batches++
	if s.batches > 1 && len(s.changes) > s.limit {
		s.changes = latest(s.changes)
		s.batches = 1
		s.limit = 2*max(len(s.changes), fibSize) + 1024
	}
}

// take returns the queued changes, each route once, and empties the queue.
func (s *fibSub) take() []RouteChange {
	s.mu.Lock()
	batch, n := s.changes, s.batches
	s.changes, s.batches, s.limit = nil, 0, 0
	s.mu.Unlock()
	if n > 1 {
		batch = latest(batch)
	}
	return batch
}

// latest keeps the last change of each route, in the order of those last
// changes. It reuses cs, which must not be shared.
func latest(cs []RouteChange) []RouteChange {
	last := make(map[RouteKey]int, len(cs))
	for i, c := range cs {
		last[c.RouteKey] = i
	}
	out := cs[:0]
	for i, c := range cs {
		if last[c.RouteKey] == i {
			out = append(out, c)
		}
	}
	clear(cs[len(out):]) // let dropped next hops go
	return out
}

func (s *fibSub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Update applies a batch of changes atomically. A change with no next hops
// and Deleted false is treated as a delete. When the batch names a route
// more than once, the last change wins.
//
// Update takes changes and their next-hop slices over: the FIB keeps them
// and hands them to subscribers, so the caller must not touch them again.
// A million-route sync then costs no copies.
func (f *FIB) Update(changes []RouteChange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	// repeat: the batch may name a route twice. A route set or deleted
	// twice is seen by its generation; one deleted and then set again is
	// not (its entry is gone), so a new route after any delete counts.
	repeat, deleted := false, false
	var v *fibVRF // the VRF of the previous change: batches come grouped by VRF
	vname := ""
	n := 0 // changes[:n] are the applied ones
	for i := range changes {
		c := &changes[i]
		if v == nil || c.VRF != vname {
			v, vname = f.vrf(c.VRF, true), c.VRF
		}
		if c.Deleted || len(c.NextHops) == 0 {
			old, ok := v.del(c.Prefix)
			if !ok {
				continue // not there: not a change
			}
			f.size--
			repeat = repeat || old.gen == f.gen
			deleted = true
			if !c.Deleted || c.NextHops != nil {
				*c = RouteChange{Route: Route{RouteKey: c.RouteKey}, Deleted: true}
			}
		} else {
			c.NextHops = c.NextHops[:len(c.NextHops):len(c.NextHops)] // appends by a reader copy
			old, ok := v.set(c.Prefix, fibEntry{nh: c.NextHops, gen: f.gen})
			if !ok {
				f.size++
			}
			repeat = repeat || ok && old.gen == f.gen || !ok && deleted
		}
		if n != i {
			changes[n] = *c
		}
		n++
	}
	clear(changes[n:])
	applied := changes[:n:n]
	for name, v := range f.vrfs {
		if v.len() == 0 {
			delete(f.vrfs, name)
		}
	}
	if repeat {
		applied = latest(applied)
	}
	if len(applied) == 0 {
		return
	}
	for s := range f.subs {
		s.mu.Lock()
		s.push(applied, f.size)
		s.mu.Unlock()
		s.signal()
	}
}

// Lookup returns the next hops of a route.
func (f *FIB) Lookup(key RouteKey) ([]NextHop, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vrf(key.VRF, false)
	if v == nil {
		return nil, false
	}
	e, ok := v.get(key.Prefix)
	return append([]NextHop(nil), e.nh...), ok
}

// Len returns the number of routes, and the number in each VRF.
func (f *FIB) Len() (total int, perVRF map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	perVRF = make(map[string]int, len(f.vrfs))
	for name, v := range f.vrfs {
		perVRF[name] = v.len()
	}
	return f.size, perVRF
}

// Subscribe calls fn with every route currently in the FIB, then with each
// later batch of changes, until ctx is done. Changes to one route that pile
// up while fn runs are merged into the latest one; a batch names a route
// at most once. Batches are shared between subscribers: fn must not modify
// them. fn runs on one goroutine; Subscribe blocks until ctx is done.
func (f *FIB) Subscribe(ctx context.Context, fn func([]RouteChange)) {
	s := &fibSub{wake: make(chan struct{}, 1)}
	f.mu.Lock()
	snap := make([]RouteChange, 0, f.size)
	for name, v := range f.vrfs {
		v.all(func(p netip.Prefix, nh []NextHop) {
			snap = append(snap, RouteChange{Route: Route{RouteKey: RouteKey{VRF: name, Prefix: p}, NextHops: nh}})
		})
	}
	if len(snap) > 0 {
		s.push(snap, f.size)
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	s.signal()
	defer func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if batch := s.take(); len(batch) > 0 {
			fn(batch)
		}
	}
}
