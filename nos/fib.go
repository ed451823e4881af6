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
// Subscribe and receive a snapshot followed by batched changes. It is safe
// for concurrent use.
type FIB struct {
	mu     sync.Mutex // guards routes, subs
	routes map[RouteKey][]NextHop
	subs   map[*fibSub]struct{}
}

// NewFIB returns an empty FIB.
func NewFIB() *FIB {
	return &FIB{routes: make(map[RouteKey][]NextHop), subs: make(map[*fibSub]struct{})}
}

type fibSub struct {
	mu      sync.Mutex       // guards pending, changes
	pending map[RouteKey]int // key → index of its latest change in changes
	changes []RouteChange    // in arrival order, one per key
	wake    chan struct{}
}

// push queues c, replacing a queued change of the same key; s.mu is held.
func (s *fibSub) push(c RouteChange) {
	if i, ok := s.pending[c.RouteKey]; ok {
		s.changes[i] = c
		return
	}
	s.pending[c.RouteKey] = len(s.changes)
	s.changes = append(s.changes, c)
}

// take returns the queued changes and empties the queue.
func (s *fibSub) take() []RouteChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch := s.changes
	s.changes = nil
	clear(s.pending)
	return batch
}

func (s *fibSub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Update applies a batch of changes atomically. A change with no next hops
// and Deleted false is treated as a delete.
func (f *FIB) Update(changes []RouteChange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	applied := changes[:0:0]
	// One backing array holds the copies of every next-hop set of the
	// batch: one allocation per batch rather than per route.
	total := 0
	for _, c := range changes {
		total += len(c.NextHops)
	}
	store := make([]NextHop, 0, total)
	for _, c := range changes {
		if c.Deleted || len(c.NextHops) == 0 {
			if _, ok := f.routes[c.RouteKey]; !ok {
				continue
			}
			delete(f.routes, c.RouteKey)
			applied = append(applied, RouteChange{Route: Route{RouteKey: c.RouteKey}, Deleted: true})
			continue
		}
		start := len(store)
		store = append(store, c.NextHops...)
		nh := store[start:len(store):len(store)]
		f.routes[c.RouteKey] = nh
		applied = append(applied, RouteChange{Route: Route{RouteKey: c.RouteKey, NextHops: nh}})
	}
	if len(applied) == 0 {
		return
	}
	for s := range f.subs {
		s.mu.Lock()
		for _, c := range applied {
			s.push(c)
		}
		s.mu.Unlock()
		s.signal()
	}
}

// Lookup returns the next hops of a route.
func (f *FIB) Lookup(key RouteKey) ([]NextHop, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nh, ok := f.routes[key]
	return append([]NextHop(nil), nh...), ok
}

// Len returns the number of routes, and the number in each VRF.
func (f *FIB) Len() (total int, perVRF map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	perVRF = make(map[string]int)
	for k := range f.routes {
		perVRF[k.VRF]++
	}
	return len(f.routes), perVRF
}

// Subscribe calls fn with every route currently in the FIB, then with each
// later batch of changes, until ctx is done. Changes to one key that pile up
// while fn runs are coalesced into the latest one. fn runs on one goroutine;
// Subscribe blocks until ctx is done.
func (f *FIB) Subscribe(ctx context.Context, fn func([]RouteChange)) {
	s := &fibSub{pending: make(map[RouteKey]int), wake: make(chan struct{}, 1)}
	f.mu.Lock()
	for k, nh := range f.routes {
		s.push(RouteChange{Route: Route{RouteKey: k, NextHops: nh}})
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
