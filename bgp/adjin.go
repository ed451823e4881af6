package bgp

import "net/netip"

// adjInKey identifies one received path: its prefix and its RD, peer and
// ADD-PATH identifier.
type adjInKey struct {
	prefix prefixKey
	pathID
}

// adjIn holds the received paths the RIB does not store (rejected ones,
// and paths to our own endpoint), so that what a peer announced can be
// counted exactly: a peer's received count is its stored paths plus these.
// Such paths are rare; each costs one map entry. It is guarded by the
// RIB's mutex.
type adjIn struct {
	paths map[adjInKey]bool // true: stale, the peer's session went down since
	count []int64           // per peer index: entries in paths
}

// add records a path the RIB ignores; announced again, it is no longer
// stale.
func (a *adjIn) add(pk prefixKey, id pathID) {
	k := adjInKey{pk, id}
	if _, ok := a.paths[k]; !ok {
		a.count[id.peer]++
	}
	a.paths[k] = false
}

// remove forgets a path: withdrawn, or now stored. It runs for every
// received path, nearly always with nothing ignored.
func (a *adjIn) remove(pk prefixKey, id pathID) {
	if len(a.paths) == 0 {
		return
	}
	k := adjInKey{pk, id}
	if _, ok := a.paths[k]; ok {
		delete(a.paths, k)
		a.count[id.peer]--
	}
}

// markStale marks every ignored path of a peer whose session went down.
func (a *adjIn) markStale(peer uint32) {
	if a.count[peer] == 0 {
		return
	}
	for k := range a.paths {
		if k.peer == peer {
			a.paths[k] = true
		}
	}
}

// sweepStale forgets the ignored paths of a peer still stale.
func (a *adjIn) sweepStale(peer uint32) {
	if a.count[peer] == 0 {
		return
	}
	for k, stale := range a.paths {
		if k.peer == peer && stale {
			delete(a.paths, k)
			a.count[peer]--
		}
	}
}

func (a *adjIn) clear() {
	clear(a.paths)
	clear(a.count)
}

// ribCounters is a snapshot of import's counters.
type ribCounters struct {
	received  map[netip.Addr]int64 // per peer: paths it announces now, whatever became of them
	installed map[netip.Addr]int64 // per peer: paths imported into at least one VRF
	rejected  map[netip.Addr]int64 // per peer: paths rejected since start
	reasons   map[string]int64
	vrfRoutes map[string]int // per VRF (countersOf: those asked for)
	routes    int            // in every VRF
	paths     int
}

// counters returns every counter, the routes of every VRF included.
func (r *rib) counters() ribCounters { return r.countersOf(true, nil) }

// countersOf returns the counters with the route counts of the VRFs in
// also and of those whose count changed since the last call, or of every
// VRF when all is set.
func (r *rib) countersOf(all bool, also map[string]bool) ribCounters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := ribCounters{
		received:  map[netip.Addr]int64{},
		installed: map[netip.Addr]int64{},
		rejected:  map[netip.Addr]int64{},
		reasons:   map[string]int64{},
		vrfRoutes: map[string]int{},
		paths:     r.npaths,
	}
	for i, a := range r.peers {
		c.received[a] = r.held[i] + r.ignored.count[i]
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
			c.routes += v.count
		}
	}
	for i := range r.countDirty {
		if v := r.vrfs[i]; v.live && !all {
			c.vrfRoutes[v.name] = v.count
		}
	}
	clear(r.countDirty)
	for name := range also {
		if i, ok := r.vrfIdx[name]; ok && !all {
			c.vrfRoutes[name] = r.vrfs[i].count
		}
	}
	if all {
		for _, v := range r.vrfs {
			if v.live {
				c.vrfRoutes[v.name] = v.count
			}
		}
	}
	return c
}
