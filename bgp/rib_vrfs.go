package bgp

import (
	"slices"
)

// rebuildImporters indexes the live VRFs by the route targets they
// import; r.mu is held.
func (r *rib) rebuildImporters() {
	clear(r.importers)
	for i, v := range r.vrfs {
		r.countDirty[uint32(i)] = struct{}{}
		if !v.live {
			continue
		}
		for _, t := range v.rts {
			r.importers[t] = append(r.importers[t], uint32(i))
		}
	}
}

// patchVRFs changes the VRFs import knows by a commit's delta: set holds
// the VRFs added or changed, del the names of those removed; the other
// VRFs are not looked at. Only the route-target sets that the old or the
// new import route targets of a changed VRF are in are matched again;
// when no set imports into other VRFs than before and no encapsulation
// changed, no stored path is looked at either. It returns how many VRFs
// it visited (for tests).
func (r *rib) patchVRFs(set map[string]vrfSpec, del []string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	visited := 0
	var touched []rt // import route targets of VRFs that changed, old and new
	encap := false
	for _, name := range del {
		i, ok := r.vrfIdx[name]
		if !ok {
			continue
		}
		visited++
		touched = append(touched, r.vrfs[i].rts...)
		r.unimport(i)
		r.vrfs[i].live = false
		r.countDirty[i] = struct{}{}
		delete(r.vrfIdx, name)
	}
	for name, v := range set {
		visited++
		i, ok := r.vrfIdx[name]
		if ok && slices.Equal(v.importRTs, r.vrfs[i].rts) && v.encap == r.vrfs[i].encap {
			continue
		}
		if ok {
			touched = append(touched, r.vrfs[i].rts...)
			encap = encap || v.encap != r.vrfs[i].encap
			r.unimport(i)
			r.vrfs[i].rts, r.vrfs[i].encap = slices.Clone(v.importRTs), v.encap
		} else {
			i = uint32(len(r.vrfs))
			r.vrfIdx[name] = i
			r.vrfs = append(r.vrfs, importVRF{name: name, rts: slices.Clone(v.importRTs), encap: v.encap, live: true})
		}
		touched = append(touched, v.importRTs...)
		r.countDirty[i] = struct{}{}
		for _, t := range v.importRTs {
			imp := r.importers[t]
			at, _ := slices.BinarySearch(imp, i)
			r.importers[t] = slices.Insert(imp, at, i)
		}
	}
	relink := encap
	slices.Sort(touched)
	var sets []uint32
	for _, t := range slices.Compact(touched) {
		sets = append(sets, r.rtRtsets[t]...)
	}
	slices.Sort(sets)
	for _, i := range slices.Compact(sets) {
		if vs := r.vrfset(r.matchVRFs(r.rtsets[i])); vs != r.rtsetVRF[i] {
			r.rtsetVRF[i] = vs
			relink = true
		}
	}
	if !relink {
		return visited
	}
	// Some stored paths import elsewhere now: every entry is linked again
	// (as setVRFs does).
	r.relinkAll()
	return visited
}

// unimport removes VRF i from the importers of its route targets; r.mu is
// held.
func (r *rib) unimport(i uint32) {
	for _, t := range r.vrfs[i].rts {
		imp := r.importers[t]
		if at, ok := slices.BinarySearch(imp, i); ok {
			imp = slices.Delete(imp, at, at+1)
		}
		if len(imp) == 0 {
			delete(r.importers, t)
		} else {
			r.importers[t] = imp
		}
	}
}
