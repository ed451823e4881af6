package bgp

import (
	"slices"

	"github.com/isthmus-net/isthmus/nos"
)

// aftOrigins names the route distinguishers and route targets of the BGP
// entries among items (nos.AFTOrigins): those of the paths import selects
// for the entry's VRF now, the ones whose next hops the FIB carries. An
// entry import no longer has keeps none.
func (r *rib) aftOrigins(items []nos.AFTItem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range items {
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
		it.RDs, it.RTs = r.selectedOrigins(vrf, r.entry(idx))
	}
}

// selectedOrigins returns the RDs and RTs of the paths nexthops selects
// for a VRF, sorted and unique. r.mu is held.
func (r *rib) selectedOrigins(vrf uint32, e *entry) (rds, rts []string) {
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
		return nil, nil
	}
	for i := range e.len() {
		p := e.at(i)
		l := p.learned
		if l.localPref != best.localPref || l.asLen != best.asLen || !r.importsInto(l, vrf) {
			continue
		}
		rds = append(rds, p.rd.String())
		for _, t := range r.rtsets[l.rtset] {
			rts = append(rts, t.String())
		}
	}
	slices.Sort(rds)
	slices.Sort(rts)
	return slices.Compact(rds), slices.Compact(rts)
}
