package bgp

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"

	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/isthmus-net/isthmus/nos"
)

// importVRF is a VRF as import sees it.
type importVRF struct {
	name  string
	rts   []rt
	encap nos.Encap
	live  bool // false once the VRF is deleted; its index is not reused
	count int  // routes currently in the VRF
}

// rib is the import side: every received VPNv4 path that passed the
// checks, grouped by prefix, and the VRFs they import into. It is fed the
// paths each peer sends (GoBGP's Adj-RIB-In events, one per UPDATE) and
// drained into the FIB in batches; it makes its own selection and ECMP
// sets. It is safe for concurrent use.
type rib struct {
	mu sync.Mutex // guards every field below

	localAS uint32      // paths from other ASes count with the default LOCAL_PREF
	own     map[v4]bool // this host's endpoints: routes to them are ignored
	peers   []netip.Addr
	peerIdx map[netip.Addr]uint32
	vrfs    []importVRF
	vrfIdx  map[string]uint32
	// importers are the live VRFs importing each route target, sorted
	// (rib_vrfs.go), so matching a route-target set reads only them.
	importers map[rt][]uint32
	// rtRtsets are the route-target sets each route target is in, so a
	// VRF's change recomputes only the sets it can match.
	rtRtsets map[rt][]uint32
	// countDirty are the VRFs whose route count changed since the state
	// last read it (takeVRFCounts).
	countDirty map[uint32]struct{}

	rtsets   [][]rt
	rtsetIdx map[string]uint32
	rtsetVRF []uint32 // per rtset: the vrfset it imports into

	// vrfsets are sets of VRF indexes, sorted, interned and never changed,
	// so that an entry's old set stays readable after the VRFs change.
	// Index 0 is the empty set.
	vrfsets   [][]uint32
	vrfsetIdx map[string]uint32

	prefixes map[prefixKey]uint32 // index into entries
	entries  [][]entry            // chunks of chunkSize: growing never copies an entry
	nentries uint32               // entries ever used (live or free)
	free     []uint32             // entries free for reuse
	freeing  []uint32             // entries emptied since the last flush (still in dirty)
	dirty    []uint32             // entries whose routes changed since the last flush
	deleted  []vrfPrefix          // routes gone since the last flush
	npaths   int

	held      []int64           // per peer: stored paths
	installed []int64           // per peer: paths imported into at least one VRF
	rejected  []int64           // per peer: paths rejected since start
	stale     []int             // per peer: paths kept from a session that went down
	ignored   adjIn             // received paths not stored: rejected, or to our own endpoint
	reasons   [numRejects]int64 // rejected paths by reason since start
	rtbuf     []rt              // scratch for readPath
}

func newRIB() *rib {
	return &rib{
		own:        map[v4]bool{},
		peerIdx:    map[netip.Addr]uint32{},
		vrfIdx:     map[string]uint32{},
		importers:  map[rt][]uint32{},
		rtRtsets:   map[rt][]uint32{},
		countDirty: map[uint32]struct{}{},
		rtsetIdx:   map[string]uint32{},
		vrfsets:    [][]uint32{nil},
		vrfsetIdx:  map[string]uint32{"": 0},
		prefixes:   map[prefixKey]uint32{},
		ignored:    adjIn{paths: map[adjInKey]bool{}},
	}
}

// peer returns the index of a peer address; r.mu is held.
func (r *rib) peer(a netip.Addr) uint32 {
	if i, ok := r.peerIdx[a]; ok {
		return i
	}
	i := uint32(len(r.peers))
	r.peers = append(r.peers, a)
	r.peerIdx[a] = i
	r.held = append(r.held, 0)
	r.installed = append(r.installed, 0)
	r.rejected = append(r.rejected, 0)
	r.stale = append(r.stale, 0)
	r.ignored.count = append(r.ignored.count, 0)
	return i
}

// setLocalAS sets the AS this host is in. LOCAL_PREF is meaningful only
// inside it (RFC 4271 5.1.5): paths from other ASes count with the default.
func (r *rib) setLocalAS(as uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.localAS = as
}

// markStale marks every path from a peer whose session went down. With
// graceful restart the peer's paths stay (RFC 4724 helper mode) until the
// peer announces them again, ends its initial update with End-of-RIB
// (sweepStale), or GoBGP withdraws them when the restart time runs out.
// Without graceful restart they have been withdrawn already.
func (r *rib) markStale(peer netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pi, ok := r.peerIdx[peer]
	if !ok {
		return
	}
	r.ignored.markStale(pi)
	for _, idx := range r.prefixes {
		e := r.entry(idx)
		for i := range e.len() {
			if p := e.at(i); p.peer == pi && !p.stale {
				p.stale = true
				r.stale[pi]++
			}
		}
	}
}

// sweepStale removes a peer's paths that are still stale: the peer has
// sent End-of-RIB without them. It returns how many went.
func (r *rib) sweepStale(peer netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	pi, ok := r.peerIdx[peer]
	if !ok {
		return 0
	}
	r.ignored.sweepStale(pi)
	if r.stale[pi] == 0 {
		return 0
	}
	n := 0
	for _, idx := range r.prefixes {
		e := r.entry(idx)
		for i := e.len() - 1; i >= 0; i-- {
			if p := e.at(i); p.peer == pi && p.stale {
				r.removeAt(idx, i)
				n++
			}
		}
	}
	return n
}

// rtset returns the index of a route-target set; r.mu is held.
func (r *rib) rtset(rts []rt) uint32 {
	var b [8 * 8]byte
	key := b[:0]
	for _, t := range rts {
		key = binary.BigEndian.AppendUint64(key, uint64(t))
	}
	// string(key) in a map index does not allocate.
	if i, ok := r.rtsetIdx[string(key)]; ok {
		return i
	}
	i := uint32(len(r.rtsets))
	set := slices.Clone(rts)
	r.rtsets = append(r.rtsets, set)
	r.rtsetIdx[string(key)] = i
	r.rtsetVRF = append(r.rtsetVRF, r.vrfset(r.matchVRFs(set)))
	for _, t := range set {
		r.rtRtsets[t] = append(r.rtRtsets[t], i)
	}
	return i
}

// vrfset interns a sorted set of VRF indexes; r.mu is held.
func (r *rib) vrfset(vrfs []uint32) uint32 {
	var b [8 * 4]byte
	key := b[:0]
	for _, v := range vrfs {
		key = binary.BigEndian.AppendUint32(key, v)
	}
	if i, ok := r.vrfsetIdx[string(key)]; ok {
		return i
	}
	i := uint32(len(r.vrfsets))
	r.vrfsets = append(r.vrfsets, slices.Clone(vrfs))
	r.vrfsetIdx[string(key)] = i
	return i
}

// matchVRFs returns the live VRFs importing any of rts, sorted; r.mu is held.
func (r *rib) matchVRFs(rts []rt) []uint32 {
	var out []uint32
	for _, t := range rts {
		out = append(out, r.importers[t]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// imports reports whether a path imports into any VRF; r.mu is held.
func (r *rib) imports(l learned) bool { return r.rtsetVRF[l.rtset] != 0 }

// setEndpoint sets this host's own endpoint.
func (r *rib) setEndpoint(a netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	own := map[v4]bool{}
	if a.Is4() {
		own[v4of(a)] = true
	}
	if ownEqual(own, r.own) {
		return
	}
	r.own = own
	// Paths to our own endpoint were never stored; a path stored while it
	// pointed elsewhere now points to us: drop those.
	for _, idx := range r.prefixes {
		e := r.entry(idx)
		for i := e.len() - 1; i >= 0; i-- {
			if p := e.at(i); own[p.endpoint] {
				r.ignored.add(e.prefix, p.pathID)
				r.removeAt(idx, i)
			}
		}
	}
}

func ownEqual(a, b map[v4]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// setVRFs replaces the VRFs import knows. When the import side of any VRF
// changes, every stored path is imported again; every route is flushed
// again, and the ones that are gone as deletes.
func (r *rib) setVRFs(vrfs map[string]vrfSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for name, i := range r.vrfIdx {
		v, ok := vrfs[name]
		if !ok || !slices.Equal(v.importRTs, r.vrfs[i].rts) || v.encap != r.vrfs[i].encap {
			changed = true
		}
	}
	for name := range vrfs {
		if _, ok := r.vrfIdx[name]; !ok {
			changed = true
		}
	}
	if !changed {
		return
	}
	for name, i := range r.vrfIdx {
		if v, ok := vrfs[name]; ok {
			r.vrfs[i].rts, r.vrfs[i].encap = slices.Clone(v.importRTs), v.encap
			continue
		}
		r.vrfs[i].live = false
		delete(r.vrfIdx, name)
	}
	for name, v := range vrfs {
		if _, ok := r.vrfIdx[name]; !ok {
			r.vrfIdx[name] = uint32(len(r.vrfs))
			r.vrfs = append(r.vrfs, importVRF{name: name, rts: slices.Clone(v.importRTs), encap: v.encap, live: true})
		}
	}
	r.rebuildImporters()
	for i, set := range r.rtsets {
		r.rtsetVRF[i] = r.vrfset(r.matchVRFs(set))
	}
	r.relinkAll()
}

// relinkAll links every stored path again to the VRFs it imports into
// and marks every prefix dirty (a VRF's encapsulation may have changed).
// r.mu is held.
func (r *rib) relinkAll() {
	clear(r.installed)
	for _, idx := range r.prefixes {
		e := r.entry(idx)
		for i := range e.len() {
			if p := e.at(i); r.imports(p.learned) {
				r.installed[p.peer]++
			}
		}
		r.relink(idx)
		r.markDirty(idx)
	}
}

// clearPaths forgets every received path, as when the speaker that
// received them is gone; the routes they made are flushed as deletes.
func (r *rib) clearPaths() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pk, idx := range r.prefixes {
		for _, v := range r.vrfsets[r.entry(idx).vrfset] {
			r.vrfs[v].count--
			r.countDirty[v] = struct{}{}
			r.deleted = append(r.deleted, vrfPrefix{vrf: v, prefix: pk})
		}
	}
	clear(r.prefixes)
	r.entries, r.nentries, r.free, r.freeing, r.dirty = nil, 0, nil, nil, nil
	clear(r.held)
	clear(r.installed)
	clear(r.stale)
	r.ignored.clear()
	r.npaths = 0
}

// update applies one batch of received paths and withdrawals. It returns
// how many paths were rejected.
func (r *rib) update(paths []*apiutil.Path) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	bad := 0
	for _, p := range paths {
		if p == nil || !p.PeerAddress.IsValid() || p.PeerAddress.IsUnspecified() {
			continue // locally originated: our own export
		}
		rcv, why := readPath(p, r.rtbuf)
		r.rtbuf = rcv.rts[:0]
		if why == rejectFamily {
			continue
		}
		pk := prefixKeyOf(rcv.prefix)
		id := pathID{rd: rcv.rd, peer: r.peer(rcv.peer), id: rcv.id}
		if rcv.withdraw {
			r.remove(pk, id)
			r.ignored.remove(pk, id)
			continue
		}
		if why != rejectNone {
			bad++
			r.reasons[why]++
			r.rejected[id.peer]++
			r.remove(pk, id)
			r.ignored.add(pk, id)
			continue
		}
		ep := v4of(rcv.endpoint)
		if r.own[ep] {
			r.remove(pk, id)
			r.ignored.add(pk, id)
			continue
		}
		r.ignored.remove(pk, id)
		if p.PeerASN != r.localAS {
			rcv.localPref = defaultLocalPref
		}
		l := learned{endpoint: ep, label: rcv.label, localPref: rcv.localPref, rtset: r.rtset(rcv.rts),
			asLen: uint8(min(rcv.asLen, 255)), encap: rcv.encap}
		r.store(pk, storedPath{pathID: id, learned: l})
	}
	return bad
}

// store adds or replaces a path; r.mu is held.
func (r *rib) store(pk prefixKey, p storedPath) {
	idx, ok := r.prefixes[pk]
	if !ok {
		idx = r.newEntry(pk)
		r.prefixes[pk] = idx
	}
	e := r.entry(idx)
	if i := e.find(p.pathID); i >= 0 {
		old := e.at(i)
		if old.stale {
			old.stale = false // announced again: kept
			r.stale[p.peer]--
		}
		if old.learned == p.learned {
			return
		}
		if r.imports(old.learned) {
			r.installed[p.peer]--
		}
		*old = p
	} else {
		e.add(p)
		r.npaths++
		r.held[p.peer]++
	}
	if r.imports(p.learned) {
		r.installed[p.peer]++
	}
	r.relink(idx)
	r.markDirty(idx)
}

// newEntry returns the index of an empty entry; r.mu is held.
func (r *rib) newEntry(pk prefixKey) uint32 {
	if n := len(r.free); n > 0 {
		idx := r.free[n-1]
		r.free = r.free[:n-1]
		*r.entry(idx) = entry{prefix: pk}
		return idx
	}
	idx := r.nentries
	if idx%chunkSize == 0 {
		r.entries = append(r.entries, make([]entry, chunkSize))
	}
	r.nentries++
	*r.entry(idx) = entry{prefix: pk}
	return idx
}

// chunkSize is how many entries a slab chunk holds (about 300 KiB).
const chunkSize = 1 << 12

// entry returns an entry by index; r.mu is held.
func (r *rib) entry(idx uint32) *entry { return &r.entries[idx/chunkSize][idx%chunkSize] }

// remove forgets a path, if it is stored; r.mu is held.
func (r *rib) remove(pk prefixKey, id pathID) {
	idx, ok := r.prefixes[pk]
	if !ok {
		return
	}
	if i := r.entry(idx).find(id); i >= 0 {
		r.removeAt(idx, i)
	}
}

// removeAt forgets the i-th path of an entry; r.mu is held. An emptied
// entry is reused only after the next flush, which still lists it.
func (r *rib) removeAt(idx uint32, i int) {
	e := r.entry(idx)
	p := e.at(i)
	if r.imports(p.learned) {
		r.installed[p.peer]--
	}
	if p.stale {
		r.stale[p.peer]--
	}
	e.remove(i)
	r.npaths--
	r.held[p.peer]--
	r.relink(idx)
	r.markDirty(idx)
	if e.len() == 0 {
		delete(r.prefixes, e.prefix)
		r.freeing = append(r.freeing, idx)
	}
}

// relink recomputes the VRFs an entry has a route in, keeps the per-VRF
// counts and records the routes that are gone; r.mu is held.
func (r *rib) relink(idx uint32) {
	e := r.entry(idx)
	var set uint32
	switch e.len() {
	case 0:
	case 1:
		set = r.rtsetVRF[e.at(0).rtset]
	default:
		var union []uint32
		for i := range e.len() {
			union = append(union, r.vrfsets[r.rtsetVRF[e.at(i).rtset]]...)
		}
		slices.Sort(union)
		set = r.vrfset(slices.Compact(union))
	}
	if set == e.vrfset {
		return
	}
	oldVRFs, newVRFs := r.vrfsets[e.vrfset], r.vrfsets[set]
	for _, v := range oldVRFs {
		if _, ok := slices.BinarySearch(newVRFs, v); !ok {
			r.vrfs[v].count--
			r.countDirty[v] = struct{}{}
			r.deleted = append(r.deleted, vrfPrefix{vrf: v, prefix: e.prefix})
		}
	}
	for _, v := range newVRFs {
		if _, ok := slices.BinarySearch(oldVRFs, v); !ok {
			r.vrfs[v].count++
			r.countDirty[v] = struct{}{}
		}
	}
	e.vrfset = set
}

// markDirty lists an entry for the next flush; r.mu is held.
func (r *rib) markDirty(idx uint32) {
	if e := r.entry(idx); !e.dirty {
		e.dirty = true
		r.dirty = append(r.dirty, idx)
	}
}

// flush returns the FIB changes for every route that changed since the
// last flush: its ECMP set, or a delete.
func (r *rib) flush() []nos.RouteChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.dirty)+len(r.deleted) == 0 {
		return nil
	}
	out := make([]nos.RouteChange, 0, len(r.dirty)+len(r.deleted))
	for _, d := range r.deleted {
		if idx, ok := r.prefixes[d.prefix]; ok {
			if _, back := slices.BinarySearch(r.vrfsets[r.entry(idx).vrfset], d.vrf); back && r.vrfs[d.vrf].live {
				continue // gone and back since the last flush: the update below says it
			}
		}
		out = append(out, nos.RouteChange{Route: nos.Route{RouteKey: r.routeKey(d)}, Deleted: true})
	}
	// The FIB copies next hops, so one backing array serves the whole batch
	// instead of an allocation per route.
	slab := make([]nos.NextHop, 0, len(r.dirty))
	for _, idx := range r.dirty {
		e := r.entry(idx)
		e.dirty = false
		for _, v := range r.vrfsets[e.vrfset] {
			if !r.vrfs[v].live {
				continue // its deletion was recorded when the VRF went
			}
			start := len(slab)
			slab = r.nexthops(slab, v, e)
			nhs := slab[start:len(slab):len(slab)]
			out = append(out, nos.RouteChange{Route: nos.Route{RouteKey: r.routeKey(vrfPrefix{vrf: v, prefix: e.prefix}), NextHops: nhs}})
		}
	}
	r.dirty, r.deleted = r.dirty[:0], r.deleted[:0]
	r.free, r.freeing = append(r.free, r.freeing...), r.freeing[:0]
	return out
}

func (r *rib) routeKey(d vrfPrefix) nos.RouteKey {
	return nos.RouteKey{VRF: r.vrfs[d.vrf].name, Prefix: d.prefix.prefix()}
}

// nexthops appends the ECMP set of a route in a VRF: of the paths that
// import into it, those with the highest local preference and then the
// shortest AS path, one next hop per distinct {endpoint, label}.
func (r *rib) nexthops(out []nos.NextHop, vrf uint32, e *entry) []nos.NextHop {
	start := len(out)
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
	for i := range e.len() {
		l := e.at(i).learned
		if l.localPref != best.localPref || l.asLen != best.asLen || !r.importsInto(l, vrf) {
			continue
		}
		encap := l.encap
		if encap == 0 {
			encap = r.vrfs[vrf].encap
		}
		nh := nos.NextHop{Endpoint: l.endpoint.addr(), Label: l.label, Encap: encap}
		if !slices.Contains(out[start:], nh) {
			out = append(out, nh)
		}
	}
	slices.SortFunc(out[start:], func(a, b nos.NextHop) int {
		if c := a.Endpoint.Compare(b.Endpoint); c != 0 {
			return c
		}
		return cmp.Compare(a.Label, b.Label)
	})
	return out
}

// importsInto reports whether a path imports into a VRF; r.mu is held.
func (r *rib) importsInto(l learned, vrf uint32) bool {
	set := r.vrfsets[r.rtsetVRF[l.rtset]]
	if len(set) == 1 {
		return set[0] == vrf
	}
	_, ok := slices.BinarySearch(set, vrf)
	return ok
}

// has reports whether a VRF route exists (for graceful-restart cleanup).
func (r *rib) has(key nos.RouteKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	vi, ok := r.vrfIdx[key.VRF]
	if !ok || !key.Prefix.Addr().Is4() {
		return false
	}
	idx, ok := r.prefixes[prefixKeyOf(key.Prefix)]
	if !ok {
		return false
	}
	_, ok = slices.BinarySearch(r.vrfsets[r.entry(idx).vrfset], vi)
	return ok
}
