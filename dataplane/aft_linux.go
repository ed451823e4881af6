package dataplane

import (
	"encoding/binary"
	"slices"
	"sync"

	"github.com/isthmus-net/isthmus/nos"
)

// The forwarding table as programmed (nos.AFT): the reconciler is its
// source. Every route key whose programming changed (r.local, r.remote) is
// touched; at the end of each programming pass aftFlush works out each
// touched route's entry from what the maps took, interns its next hops and
// next-hop group per VRF (identifiers are never reused, so a reader never
// confuses an old group with a new one), and tells the core's AFT which
// items changed, with the new ones before the entries that use them and
// the ones gone after. Readers look values up later (AFTKeys, AFTLookup)
// without r.mu, the lock programming holds across its map updates: the
// AFT's own values have a lock of their own (aftState.mu) that the
// writer takes only while it changes them and a reader only for a few
// keys or one shard of entries at a time, so programming never waits for
// a reader's batch, only, at most, for one short read.

// aftHop is a next hop as the AFT names it: remote (nh) or a local pod
// interface (ifindex, and its name when the next hop was made).
type aftHop struct {
	nh      NextHop
	ifindex int
	ifname  string
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
	hops []uint64 // never changed: readers are handed this slice
}

// aftEntry is a programmed entry.
type aftEntry struct {
	group  uint64
	origin nos.AFTOrigin
}

// aftShards is how many maps a VRF's entries are spread over, so that a
// reader walking every key (a new subscriber's initial sync) holds the
// read lock for one shard at a time: about 16,000 entries of a million.
const aftShards = 64

// aftReadKeys is how many keys a lookup reads under one hold of the
// read lock.
const aftReadKeys = 64

// aftShard returns the shard of an entry's key.
func aftShard(id uint64) int { return int((id * 0x9e3779b97f4a7c15) >> 58) }

// aftVRF is the AFT of one VRF.
type aftVRF struct {
	entries   [aftShards]map[uint64]aftEntry // by nos.AFTEntryKey's ID, in shard aftShard(ID)
	nentries  int
	groups    map[string]*aftGroupRef
	groupByID map[uint64]*aftGroupRef
	hops      map[aftHop]*aftHopRef
	hopByID   map[uint64]*aftHopRef
}

func (v *aftVRF) entry(id uint64) (aftEntry, bool) {
	e, ok := v.entries[aftShard(id)][id]
	return e, ok
}

func (v *aftVRF) setEntry(id uint64, e aftEntry) {
	m := v.entries[aftShard(id)]
	if _, ok := m[id]; !ok {
		v.nentries++
	}
	m[id] = e
}

func (v *aftVRF) deleteEntry(id uint64) {
	m := v.entries[aftShard(id)]
	if _, ok := m[id]; ok {
		v.nentries--
		delete(m, id)
	}
}

// aftState is the reconciler's AFT bookkeeping. mu guards vrfs and
// everything they hold: aftFlush (with r.mu held as well) write-locks it
// while it changes them; readers read-lock it without r.mu. r.mu guards
// the rest.
type aftState struct {
	mu      sync.RWMutex
	vrfs    map[string]*aftVRF
	next    uint64 // last identifier given to a group or next hop
	touched map[RouteKey]struct{}
	ids     []uint64 // scratch for intern
	hops    []aftHop // scratch for aftFlush
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
// and tells the core's AFT what changed. r.mu is held; it write-locks
// r.aft.mu while it changes the AFT.
func (r *Reconciler) aftFlush() {
	if len(r.aft.touched) == 0 {
		return
	}
	var added, entries, removed []nos.AFTKey
	r.aft.mu.Lock()
	for k := range r.aft.touched {
		key, ok := nos.AFTEntryKey(k.VRF, k.Prefix)
		if !ok {
			continue
		}
		v := r.aft.vrf(k.VRF)
		old, had := v.entry(key.ID)
		hops := r.aft.hops[:0]
		origin := nos.AFTOriginBGP
		if i, ok := r.local[k]; ok {
			hops = append(hops, aftHop{ifindex: i, ifname: r.ifname(i)})
			origin = nos.AFTOriginPod
			if _, ok := r.applied.Statics[k]; ok {
				origin = nos.AFTOriginStatic
			}
		} else {
			for _, nh := range r.remote[k] {
				hops = append(hops, aftHop{nh: nh})
			}
		}
		r.aft.hops = hops
		if len(hops) == 0 {
			if had {
				v.deleteEntry(key.ID)
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
		v.setEntry(key.ID, aftEntry{group: g, origin: origin})
		entries = append(entries, key)
		if had {
			removed = r.aft.release(k.VRF, v, old.group, removed)
		}
	}
	for name, v := range r.aft.vrfs {
		if v.nentries == 0 && len(v.groupByID) == 0 && len(v.hopByID) == 0 {
			delete(r.aft.vrfs, name)
		}
	}
	r.aft.mu.Unlock()
	clear(r.aft.touched)
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
			groups:    map[string]*aftGroupRef{},
			groupByID: map[uint64]*aftGroupRef{},
			hops:      map[aftHop]*aftHopRef{},
			hopByID:   map[uint64]*aftHopRef{},
		}
		for i := range v.entries {
			v.entries[i] = map[uint64]aftEntry{}
		}
		a.vrfs[name] = v
	}
	return v
}

// intern returns the group of hops, taking a reference to it, and
// appends the keys of groups and next hops it created to added. a.mu is
// write-locked.
func (a *aftState) intern(vrf string, v *aftVRF, hops []aftHop, added *[]nos.AFTKey) uint64 {
	ids := a.ids[:0]
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
	a.ids = ids
	a.buf = a.buf[:0]
	for _, id := range ids {
		a.buf = binary.LittleEndian.AppendUint64(a.buf, id)
	}
	g := v.groups[string(a.buf)]
	if g == nil {
		a.next++
		g = &aftGroupRef{id: a.next, key: string(a.buf), hops: slices.Clone(ids)}
		v.groups[g.key], v.groupByID[g.id] = g, g
		for _, id := range g.hops {
			v.hopByID[id].refs++
		}
		*added = append(*added, nos.AFTKey{VRF: vrf, Kind: nos.AFTGroup, ID: g.id})
	}
	g.refs++
	return g.id
}

// release drops a reference to a group; a group no entry uses goes, with
// the next hops no group uses, and their keys are appended to removed.
// a.mu is write-locked.
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

// AFTKeys implements nos.AFTSource. It read-locks the AFT for the
// groups and next hops of a VRF, then for one shard of its entries at a
// time: programming may change the table between two shards, which a
// subscriber's queue of changes (registered before it asks) makes up for.
func (r *Reconciler) AFTKeys(want func(vrf string) bool, out []nos.AFTKey) []nos.AFTKey {
	a := &r.aft
	a.mu.RLock()
	var names []string
	for name := range a.vrfs {
		if want(name) {
			names = append(names, name)
		}
	}
	a.mu.RUnlock()
	for _, name := range names {
		a.mu.RLock()
		v := a.vrfs[name]
		if v != nil {
			for id := range v.hopByID {
				out = append(out, nos.AFTKey{VRF: name, Kind: nos.AFTNextHop, ID: id})
			}
			for id := range v.groupByID {
				out = append(out, nos.AFTKey{VRF: name, Kind: nos.AFTGroup, ID: id})
			}
		}
		a.mu.RUnlock()
		for i := range aftShards {
			a.mu.RLock()
			// The VRF's table may have gone and come back since.
			if v = a.vrfs[name]; v != nil {
				for id := range v.entries[i] {
					out = append(out, nos.AFTKey{VRF: name, Kind: nos.AFTEntry, ID: id})
				}
			}
			a.mu.RUnlock()
		}
	}
	return out
}

// AFTLookup implements nos.AFTSource. It never takes r.mu, and holds the
// AFT's read lock for aftReadKeys keys at a time.
func (r *Reconciler) AFTLookup(keys []nos.AFTKey, out []nos.AFTItem) []nos.AFTItem {
	for len(keys) > 0 {
		n := min(len(keys), aftReadKeys)
		out = r.aft.lookup(keys[:n], out)
		keys = keys[n:]
	}
	return out
}

// lookup appends the current value of each key, under a.mu's read lock.
func (a *aftState) lookup(keys []nos.AFTKey, out []nos.AFTItem) []nos.AFTItem {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var v *aftVRF
	vrf := ""
	for i, k := range keys {
		if i == 0 || k.VRF != vrf {
			v, vrf = a.vrfs[k.VRF], k.VRF
		}
		it := nos.AFTItem{Key: k}
		if v != nil {
			switch k.Kind {
			case nos.AFTEntry:
				if e, ok := v.entry(k.ID); ok {
					it.Present, it.Group, it.Origin = true, e.group, e.origin
				}
			case nos.AFTGroup:
				if g := v.groupByID[k.ID]; g != nil {
					it.Present, it.NextHops = true, g.hops
				}
			case nos.AFTNextHop:
				if h := v.hopByID[k.ID]; h != nil {
					it.Present, it.Hop, it.Interface = true, h.hop.nh, h.hop.ifname
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
	r.aft.mu.RLock()
	defer r.aft.mu.RUnlock()
	n := 0
	for _, v := range r.aft.vrfs {
		n += v.nentries
	}
	return n
}
