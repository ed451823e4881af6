package bgp

import (
	"slices"
	"sync"

	"github.com/isthmus-net/isthmus/nos"
)

// aftOrigins names the route distinguishers and route targets of the BGP
// entries of the AFT (nos.AFTOrigins): those of the paths import selects
// for the entry's VRF now, the ones whose next hops the FIB carries. An
// entry import no longer has keeps none.
//
// The import's lock (rib.mu) is held only to copy, for a few entries at a
// time, the RD and route-target set of each selected path; the names are
// made without it, from a cache of every RD and route-target set already
// named. The RIB's route-target sets are interned and never changed, so a
// set's index names it for the RIB's life. Entries whose origin is the
// same single path share the same slices, so most entries cost no
// allocation at all.
type aftOrigins struct {
	rib *rib

	mu     sync.Mutex          // guards rds, rtsets
	rds    map[rd][]string     // an RD's name, as a one-element slice
	rtsets map[uint32][]string // a route-target set's names, sorted, unique
}

// aftOriginsChunk is how many items are read under one hold of rib.mu.
const aftOriginsChunk = 64

// aftOriginsCacheMax bounds the names of RDs kept (route-target sets are
// as many as the RIB holds).
const aftOriginsCacheMax = 1 << 16

func newAFTOrigins(r *rib) *aftOrigins {
	return &aftOrigins{rib: r, rds: map[rd][]string{}, rtsets: map[uint32][]string{}}
}

// aftOrigin is what a selected path contributes to an entry's origin.
type aftOrigin struct {
	item  int    // index into the items
	rd    rd     // the path's RD
	rtset uint32 // its route-target set, an index into rib.rtsets
	rts   []rt   // that set (never changed)
}

// fill implements nos.AFTOrigins.
func (o *aftOrigins) fill(items []nos.AFTItem) {
	var raw []aftOrigin
	for start := 0; start < len(items); start += aftOriginsChunk {
		raw = o.rib.selectedOrigins(items, start, min(start+aftOriginsChunk, len(items)), raw)
	}
	if len(raw) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.rds) > aftOriginsCacheMax {
		clear(o.rds)
	}
	for i := 0; i < len(raw); {
		j := i + 1
		for j < len(raw) && raw[j].item == raw[i].item {
			j++
		}
		it := &items[raw[i].item]
		if j == i+1 {
			it.RDs, it.RTs = o.rdNames(raw[i].rd), o.rtsetNames(raw[i].rtset, raw[i].rts)
		} else {
			var rds, rts []string
			for _, p := range raw[i:j] {
				rds = append(rds, o.rdNames(p.rd)...)
				rts = append(rts, o.rtsetNames(p.rtset, p.rts)...)
			}
			slices.Sort(rds)
			slices.Sort(rts)
			it.RDs, it.RTs = slices.Compact(rds), slices.Compact(rts)
		}
		i = j
	}
}

// rdNames returns an RD's name as a shared one-element slice. o.mu is
// held.
func (o *aftOrigins) rdNames(d rd) []string {
	n, ok := o.rds[d]
	if !ok {
		n = []string{d.String()}
		o.rds[d] = n
	}
	return n
}

// rtsetNames returns the sorted, unique names of a route-target set, a
// shared slice. o.mu is held.
func (o *aftOrigins) rtsetNames(i uint32, rts []rt) []string {
	n, ok := o.rtsets[i]
	if !ok {
		n = make([]string, 0, len(rts))
		for _, t := range rts {
			n = append(n, t.String())
		}
		slices.Sort(n)
		n = slices.Clip(slices.Compact(n))
		o.rtsets[i] = n
	}
	return n
}

// selectedOrigins appends the origins of the paths import selects for
// the BGP entries among items[start:end] (in the items' order), under
// r.mu: it only copies.
func (r *rib) selectedOrigins(items []nos.AFTItem, start, end int, out []aftOrigin) []aftOrigin {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := start; i < end; i++ {
		it := &items[i]
		if !it.Present || it.Key.Kind != nos.AFTEntry || it.Origin != nos.AFTOriginBGP {
			continue
		}
		vrf, ok := r.vrfIdx[it.Key.VRF]
		if !ok {
			continue
		}
		idx, ok := r.prefixes[prefixKeyOf(it.Key.Prefix())]
		if !ok {
			continue
		}
		out = r.selected(i, vrf, r.entry(idx), out)
	}
	return out
}

// selected appends the origins of the paths nexthops selects for a VRF
// from e: the best local preference, then the shortest AS path. r.mu is
// held.
func (r *rib) selected(item int, vrf uint32, e *entry, out []aftOrigin) []aftOrigin {
	if e.len() == 1 { // nearly every prefix
		p := e.at(0)
		if r.importsInto(p.learned, vrf) {
			out = append(out, aftOrigin{item: item, rd: p.rd, rtset: p.rtset, rts: r.rtsets[p.rtset]})
		}
		return out
	}
	var best learned
	n := 0
	for i := range e.len() {
		l := e.at(i).learned
		if !r.importsInto(l, vrf) {
			continue
		}
		if n == 0 || l.localPref > best.localPref || l.localPref == best.localPref && l.asLen < best.asLen {
			best = l
		}
		n++
	}
	if n == 0 {
		return out
	}
	for i := range e.len() {
		p := e.at(i)
		l := p.learned
		if l.localPref != best.localPref || l.asLen != best.asLen || !r.importsInto(l, vrf) {
			continue
		}
		out = append(out, aftOrigin{item: item, rd: p.rd, rtset: l.rtset, rts: r.rtsets[l.rtset]})
	}
	return out
}
