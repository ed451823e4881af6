package dataplane

import (
	"encoding/binary"
	"slices"

	"github.com/isthmus-net/isthmus/nos"
)

// The forwarding table as programmed (nos.AFT): the reconciler is its
// source. Every route key whose programming changed (r.local, r.remote) is
// touched; at the end of each programming pass aftFlush works out each
// touched route's entry from what the maps took, interns its next hops and
// next-hop group per VRF (identifiers are never reused, so a reader never
// confuses an old group with a new one), and tells the core's AFT which
// items changed, with the new ones before the entries that use them and
// the ones gone after. Readers look values up later (AFTLookup) under
// r.mu; nothing waits for them.

// aftHop is a next hop as the AFT names it: remote (nh) or a local pod
// interface (ifindex).
type aftHop struct {
	nh      NextHop
	ifindex int
}

// aftHopRef is an interned next hop.
type aftHopRef struct {
	id   uint64
	refs int // groups using it
	hop  aftHop
}

// aftGroupRef is an interned next-hop group.
type aftGroupRef struct {
	id   uint64
	refs int // entries using it
	key  string
	hops []uint64
}

// aftEntry is a programmed entry.
type aftEntry struct {
	group  uint64
	origin nos.AFTOrigin
}

// aftVRF is the AFT of one VRF.
type aftVRF struct {
	entries   map[uint64]aftEntry // by nos.AFTEntryKey's ID
	groups    map[string]*aftGroupRef
	groupByID map[uint64]*aftGroupRef
	hops      map[aftHop]*aftHopRef
	hopByID   map[uint64]*aftHopRef
}

// aftState is the reconciler's AFT bookkeeping; r.mu guards it.
type aftState struct {
	vrfs    map[string]*aftVRF
	next    uint64 // last identifier given to a group or next hop
	touched map[RouteKey]struct{}
	buf     []byte
}

// aftTouch records that the programming of k may have changed. r.mu is held.
func (r *Reconciler) aftTouch(k RouteKey) {
	if r.aft.touched == nil {
		r.aft.touched = map[RouteKey]struct{}{}
	}
	r.aft.touched[k] = struct{}{}
}

// aftFlush brings the AFT in line with the maps for every touched route
// and tells the core's AFT what changed. r.mu is held.
func (r *Reconciler) aftFlush() {
	if len(r.aft.touched) == 0 {
		return
	}
	var added, entries, removed []nos.AFTKey
	for k := range r.aft.touched {
		key, ok := nos.AFTEntryKey(k.VRF, k.Prefix)
		if !ok {
			continue
		}
		v := r.aft.vrf(k.VRF)
		old, had := v.entries[key.ID]
		var hops []aftHop
		origin := nos.AFTOriginBGP
		if i, ok := r.local[k]; ok {
			hops = []aftHop{{ifindex: i}}
			origin = nos.AFTOriginPod
			if _, ok := r.applied.Statics[k]; ok {
				origin = nos.AFTOriginStatic
			}
		} else {
			for _, nh := range r.remote[k] {
				hops = append(hops, aftHop{nh: nh})
			}
		}
		if len(hops) == 0 {
			if had {
				delete(v.entries, key.ID)
				entries = append(entries, key)
				removed = r.aft.release(k.VRF, v, old.group, removed)
			}
			continue
		}
		g := r.aft.intern(k.VRF, v, hops, &added)
		if had && old.group == g && old.origin == origin {
			r.aft.release(k.VRF, v, g, nil) // the reference intern took
			continue
		}
		v.entries[key.ID] = aftEntry{group: g, origin: origin}
		entries = append(entries, key)
		if had {
			removed = r.aft.release(k.VRF, v, old.group, removed)
		}
	}
	clear(r.aft.touched)
	for name, v := range r.aft.vrfs {
		if len(v.entries) == 0 && len(v.groupByID) == 0 && len(v.hopByID) == 0 {
			delete(r.aft.vrfs, name)
		}
	}
	if r.core == nil {
		return
	}
	r.core.AFT().Changed(slices.Concat(added, entries, removed))
}

func (a *aftState) vrf(name string) *aftVRF {
	if a.vrfs == nil {
		a.vrfs = map[string]*aftVRF{}
	}
	v := a.vrfs[name]
	if v == nil {
		v = &aftVRF{
			entries:   map[uint64]aftEntry{},
			groups:    map[string]*aftGroupRef{},
			groupByID: map[uint64]*aftGroupRef{},
			hops:      map[aftHop]*aftHopRef{},
			hopByID:   map[uint64]*aftHopRef{},
		}
		a.vrfs[name] = v
	}
	return v
}

// intern returns the group of hops, taking a reference to it, and
// appends the keys of groups and next hops it created to added.
func (a *aftState) intern(vrf string, v *aftVRF, hops []aftHop, added *[]nos.AFTKey) uint64 {
	ids := make([]uint64, 0, len(hops))
	for _, h := range hops {
		ref := v.hops[h]
		if ref == nil {
			a.next++
			ref = &aftHopRef{id: a.next, hop: h}
			v.hops[h], v.hopByID[ref.id] = ref, ref
			*added = append(*added, nos.AFTKey{VRF: vrf, Kind: nos.AFTNextHop, ID: ref.id})
		}
		ids = append(ids, ref.id)
	}
	slices.Sort(ids)
	a.buf = a.buf[:0]
	for _, id := range ids {
		a.buf = binary.LittleEndian.AppendUint64(a.buf, id)
	}
	g := v.groups[string(a.buf)]
	if g == nil {
		a.next++
		g = &aftGroupRef{id: a.next, key: string(a.buf), hops: ids}
		v.groups[g.key], v.groupByID[g.id] = g, g
		for _, id := range ids {
			v.hopByID[id].refs++
		}
		*added = append(*added, nos.AFTKey{VRF: vrf, Kind: nos.AFTGroup, ID: g.id})
	}
	g.refs++
	return g.id
}

// release drops a reference to a group; a group no entry uses goes, with
// the next hops no group uses, and their keys are appended to removed.
func (a *aftState) release(vrf string, v *aftVRF, id uint64, removed []nos.AFTKey) []nos.AFTKey {
	g := v.groupByID[id]
	if g == nil {
		return removed
	}
	if g.refs--; g.refs > 0 {
		return removed
	}
	delete(v.groups, g.key)
	delete(v.groupByID, id)
	removed = append(removed, nos.AFTKey{VRF: vrf, Kind: nos.AFTGroup, ID: id})
	for _, hid := range g.hops {
		h := v.hopByID[hid]
		if h.refs--; h.refs > 0 {
			continue
		}
		delete(v.hops, h.hop)
		delete(v.hopByID, hid)
		removed = append(removed, nos.AFTKey{VRF: vrf, Kind: nos.AFTNextHop, ID: hid})
	}
	return removed
}

// AFTKeys implements nos.AFTSource.
func (r *Reconciler) AFTKeys(want func(vrf string) bool, out []nos.AFTKey) []nos.AFTKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, v := range r.aft.vrfs {
		if !want(name) {
			continue
		}
		for id := range v.hopByID {
			out = append(out, nos.AFTKey{VRF: name, Kind: nos.AFTNextHop, ID: id})
		}
		for id := range v.groupByID {
			out = append(out, nos.AFTKey{VRF: name, Kind: nos.AFTGroup, ID: id})
		}
		for id := range v.entries {
			out = append(out, nos.AFTKey{VRF: name, Kind: nos.AFTEntry, ID: id})
		}
	}
	return out
}

// AFTLookup implements nos.AFTSource.
func (r *Reconciler) AFTLookup(keys []nos.AFTKey, out []nos.AFTItem) []nos.AFTItem {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		it := nos.AFTItem{Key: k}
		if v := r.aft.vrfs[k.VRF]; v != nil {
			switch k.Kind {
			case nos.AFTEntry:
				if e, ok := v.entries[k.ID]; ok {
					it.Present, it.Group, it.Origin = true, e.group, e.origin
				}
			case nos.AFTGroup:
				if g := v.groupByID[k.ID]; g != nil {
					it.Present, it.NextHops = true, g.hops
				}
			case nos.AFTNextHop:
				if h := v.hopByID[k.ID]; h != nil {
					it.Present, it.Hop = true, h.hop.nh
					if h.hop.ifindex != 0 {
						it.Interface = r.ifname(h.hop.ifindex)
					}
				}
			}
		}
		out = append(out, it)
	}
	return out
}

// ifname returns the name of an attached pod interface. r.mu is held.
func (r *Reconciler) ifname(ifindex int) string {
	for name, i := range r.ifindex {
		if i == ifindex {
			return name
		}
	}
	return ""
}

// AFTEntries returns how many entries the forwarding table holds, in
// every VRF (what the maps took).
func (r *Reconciler) AFTEntries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.aft.vrfs {
		n += len(v.entries)
	}
	return n
}
