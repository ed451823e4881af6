package bgp

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"

	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/isthmus-net/isthmus/nos"
)

// vrfPrefix is a route in a VRF, by VRF index; a compact map key.
type vrfPrefix struct {
	vrf  uint32
	addr v4
	bits uint8
}

// contribs are the received paths that a VRF route is made of. Nearly every
// route has one, which is stored inline.
type contribs struct {
	first pathKey
	more  []pathKey
	n     uint8 // 0 or 1: whether first is set
}

func (c *contribs) len() int { return int(c.n) + len(c.more) }

func (c *contribs) add(k pathKey) {
	if c.n == 0 {
		c.first, c.n = k, 1
		return
	}
	if c.first == k || slices.Contains(c.more, k) {
		return
	}
	c.more = append(c.more, k)
}

func (c *contribs) remove(k pathKey) {
	if c.n == 1 && c.first == k {
		if len(c.more) == 0 {
			c.n = 0
			return
		}
		c.first = c.more[len(c.more)-1]
		c.more = c.more[:len(c.more)-1]
		return
	}
	if i := slices.Index(c.more, k); i >= 0 {
		c.more = slices.Delete(c.more, i, i+1)
	}
}

func (c *contribs) each(fn func(pathKey)) {
	if c.n == 1 {
		fn(c.first)
	}
	for _, k := range c.more {
		fn(k)
	}
}

// importVRF is a VRF as import sees it.
type importVRF struct {
	name  string
	rts   []rt
	encap nos.Encap
	live  bool // false once the VRF is deleted; its index is not reused
	count int  // routes currently in the VRF
}

// rib is the import side: every received VPNv4 path that passed the
// checks, the VRFs they import into, and the routes (with their ECMP sets)
// that result. It is fed GoBGP best-path events and drained into the FIB in
// batches. It is safe for concurrent use.
type rib struct {
	mu sync.Mutex // guards every field below

	own     map[v4]bool // this host's endpoints: routes to them are ignored
	peers   []netip.Addr
	peerIdx map[netip.Addr]uint32
	vrfs    []importVRF
	vrfIdx  map[string]uint32

	rtsets   [][]rt
	rtsetIdx map[string]uint32
	rtsetVRF [][]uint32 // per rtset: VRFs (indexes) it imports into

	paths  map[pathKey]learned
	routes map[vrfPrefix]contribs // by value: a million routes, no million objects
	dirty  map[vrfPrefix]struct{}

	installed []int64           // per peer: paths imported into at least one VRF
	rejected  []int64           // per peer: paths rejected since start
	reasons   [numRejects]int64 // rejected paths by reason since start
	rtbuf     []rt              // scratch for readPath
}

func newRIB() *rib {
	return &rib{
		own:      map[v4]bool{},
		peerIdx:  map[netip.Addr]uint32{},
		vrfIdx:   map[string]uint32{},
		rtsetIdx: map[string]uint32{},
		paths:    map[pathKey]learned{},
		routes:   map[vrfPrefix]contribs{},
		dirty:    map[vrfPrefix]struct{}{},
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
	r.installed = append(r.installed, 0)
	r.rejected = append(r.rejected, 0)
	return i
}

// rtset returns the index of a route-target set; r.mu is held.
func (r *rib) rtset(rts []rt) uint32 {
	var b [8 * 8]byte
	key := b[:0]
	for _, t := range rts {
		key = append(key, byte(t>>56), byte(t>>48), byte(t>>40), byte(t>>32), byte(t>>24), byte(t>>16), byte(t>>8), byte(t))
	}
	if i, ok := r.rtsetIdx[string(key)]; ok {
		return i
	}
	i := uint32(len(r.rtsets))
	set := slices.Clone(rts)
	r.rtsets = append(r.rtsets, set)
	r.rtsetIdx[string(key)] = i
	r.rtsetVRF = append(r.rtsetVRF, r.matchVRFs(set))
	return i
}

// matchVRFs returns the live VRFs importing any of rts; r.mu is held.
func (r *rib) matchVRFs(rts []rt) []uint32 {
	var out []uint32
	for i, v := range r.vrfs {
		if !v.live {
			continue
		}
		for _, t := range rts {
			if _, ok := slices.BinarySearch(v.rts, t); ok {
				out = append(out, uint32(i))
				break
			}
		}
	}
	return out
}

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
	for k, l := range r.paths {
		if own[l.endpoint] {
			r.removeLocked(k)
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
// changes, every stored path is imported again; the routes that change are
// marked dirty.
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
	for i, set := range r.rtsets {
		r.rtsetVRF[i] = r.matchVRFs(set)
	}
	for k := range r.routes {
		r.dirty[k] = struct{}{}
	}
	clear(r.routes)
	for i := range r.vrfs {
		r.vrfs[i].count = 0
	}
	clear(r.installed)
	for k, l := range r.paths {
		r.link(k, l)
	}
}

// clearPaths forgets every received path, as when the speaker that
// received them is gone; the routes they made are flushed as deletes.
func (r *rib) clearPaths() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.paths {
		r.unlink(k, l)
	}
	clear(r.paths)
}

// update applies one batch of GoBGP best-path changes. It returns how many
// paths were rejected.
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
		k := pathKey{rd: rcv.rd, addr: v4of(rcv.prefix.Addr()), bits: uint8(rcv.prefix.Bits()), peer: r.peer(rcv.peer), id: rcv.id}
		if rcv.withdraw {
			r.removeLocked(k)
			continue
		}
		if why != rejectNone {
			bad++
			r.reasons[why]++
			r.rejected[k.peer]++
			r.removeLocked(k)
			continue
		}
		ep := v4of(rcv.endpoint)
		if r.own[ep] {
			r.removeLocked(k)
			continue
		}
		l := learned{endpoint: ep, label: rcv.label, localPref: rcv.localPref, rtset: r.rtset(rcv.rts),
			asLen: uint8(min(rcv.asLen, 255)), encap: rcv.encap}
		if old, ok := r.paths[k]; ok {
			if old == l {
				continue
			}
			r.unlink(k, old)
		}
		r.paths[k] = l
		r.link(k, l)
	}
	return bad
}

// removeLocked forgets a path; r.mu is held.
func (r *rib) removeLocked(k pathKey) {
	if old, ok := r.paths[k]; ok {
		r.unlink(k, old)
		delete(r.paths, k)
	}
}

// link adds a stored path to the routes of the VRFs it imports into.
func (r *rib) link(k pathKey, l learned) {
	vrfs := r.rtsetVRF[l.rtset]
	if len(vrfs) > 0 {
		r.installed[k.peer]++
	}
	for _, vi := range vrfs {
		rk := vrfPrefix{vrf: vi, addr: k.addr, bits: k.bits}
		c, ok := r.routes[rk]
		if !ok {
			r.vrfs[vi].count++
		}
		c.add(k)
		r.routes[rk] = c
		r.dirty[rk] = struct{}{}
	}
}

// unlink removes a stored path from the routes it contributes to.
func (r *rib) unlink(k pathKey, l learned) {
	vrfs := r.rtsetVRF[l.rtset]
	if len(vrfs) > 0 {
		r.installed[k.peer]--
	}
	for _, vi := range vrfs {
		rk := vrfPrefix{vrf: vi, addr: k.addr, bits: k.bits}
		c, ok := r.routes[rk]
		if !ok {
			continue
		}
		c.remove(k)
		if c.len() == 0 {
			delete(r.routes, rk)
			r.vrfs[vi].count--
		} else {
			r.routes[rk] = c
		}
		r.dirty[rk] = struct{}{}
	}
}

// flush returns the FIB changes for every route that changed since the
// last flush: its ECMP set, or a delete.
func (r *rib) flush() []nos.RouteChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.dirty) == 0 {
		return nil
	}
	out := make([]nos.RouteChange, 0, len(r.dirty))
	for rk := range r.dirty {
		key := nos.RouteKey{VRF: r.vrfs[rk.vrf].name, Prefix: netip.PrefixFrom(rk.addr.addr(), int(rk.bits))}
		c, ok := r.routes[rk]
		if !ok || !r.vrfs[rk.vrf].live {
			out = append(out, nos.RouteChange{Route: nos.Route{RouteKey: key}, Deleted: true})
			continue
		}
		out = append(out, nos.RouteChange{Route: nos.Route{RouteKey: key, NextHops: r.nexthops(rk.vrf, &c)}})
	}
	clear(r.dirty)
	return out
}

// nexthops computes the ECMP set of a route: the paths with the highest
// local preference and then the shortest AS path, one next hop per
// distinct {endpoint, label}.
func (r *rib) nexthops(vrf uint32, c *contribs) []nos.NextHop {
	var best learned
	var n int
	c.each(func(k pathKey) {
		l := r.paths[k]
		if n == 0 || l.localPref > best.localPref || l.localPref == best.localPref && l.asLen < best.asLen {
			best = l
		}
		n++
	})
	out := make([]nos.NextHop, 0, c.len())
	c.each(func(k pathKey) {
		l := r.paths[k]
		if l.localPref != best.localPref || l.asLen != best.asLen {
			return
		}
		encap := l.encap
		if encap == 0 {
			encap = r.vrfs[vrf].encap
		}
		nh := nos.NextHop{Endpoint: l.endpoint.addr(), Label: l.label, Encap: encap}
		if !slices.Contains(out, nh) {
			out = append(out, nh)
		}
	})
	slices.SortFunc(out, func(a, b nos.NextHop) int {
		if c := a.Endpoint.Compare(b.Endpoint); c != 0 {
			return c
		}
		return cmp.Compare(a.Label, b.Label)
	})
	return out
}

// has reports whether a VRF route exists (for graceful-restart cleanup).
func (r *rib) has(key nos.RouteKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	vi, ok := r.vrfIdx[key.VRF]
	if !ok || !key.Prefix.Addr().Is4() {
		return false
	}
	_, ok = r.routes[vrfPrefix{vrf: vi, addr: v4of(key.Prefix.Addr()), bits: uint8(key.Prefix.Bits())}]
	return ok
}

// ribCounters is a snapshot of import's counters.
type ribCounters struct {
	installed map[netip.Addr]int64 // per peer
	rejected  map[netip.Addr]int64 // per peer
	reasons   map[string]int64
	vrfRoutes map[string]int // per VRF
	paths     int
}

func (r *rib) counters() ribCounters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := ribCounters{
		installed: map[netip.Addr]int64{},
		rejected:  map[netip.Addr]int64{},
		reasons:   map[string]int64{},
		vrfRoutes: map[string]int{},
		paths:     len(r.paths),
	}
	for i, a := range r.peers {
		c.installed[a] = r.installed[i]
		c.rejected[a] = r.rejected[i]
	}
	for why := rejectNoRT; why < numRejects; why++ {
		if r.reasons[why] > 0 {
			c.reasons[why.String()] = r.reasons[why]
		}
	}
	for _, v := range r.vrfs {
		if v.live {
			c.vrfRoutes[v.name] = v.count
		}
	}
	return c
}
