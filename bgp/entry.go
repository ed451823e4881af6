package bgp

import "slices"

// vrfPrefix is a route in a VRF, by VRF index.
type vrfPrefix struct {
	vrf    uint32
	prefix prefixKey
}

// storedPath is one received path that passed the checks.
type storedPath struct {
	pathID
	learned
	stale bool // its peer's session went down; not yet announced again
}

// entry holds every stored path to one prefix, whatever its RD or peer,
// and the set of VRFs the prefix has a route in. The routes themselves
// are not stored: a VRF's route is computed at flush from the paths whose
// route targets it imports. One map lookup per received path is all the
// bookkeeping costs; a million routes are a million slab slots, not a
// million objects. Nearly every prefix has one path, stored inline.
type entry struct {
	prefix prefixKey
	first  storedPath
	more   []storedPath
	n      uint8  // 0 or 1: whether first is set
	dirty  bool   // listed in rib.dirty
	vrfset uint32 // index into rib.vrfsets: VRFs the prefix has a route in
}

func (e *entry) len() int { return int(e.n) + len(e.more) }

// at returns the i-th path; i < e.len().
func (e *entry) at(i int) *storedPath {
	if e.n == 1 {
		if i == 0 {
			return &e.first
		}
		i--
	}
	return &e.more[i]
}

func (e *entry) find(id pathID) int {
	for i := range e.len() {
		if e.at(i).pathID == id {
			return i
		}
	}
	return -1
}

func (e *entry) add(p storedPath) {
	if e.n == 0 {
		e.first, e.n = p, 1
		return
	}
	e.more = append(e.more, p)
}

func (e *entry) remove(i int) {
	if e.n == 1 && i == 0 {
		if len(e.more) == 0 {
			e.n = 0
			return
		}
		e.first = e.more[len(e.more)-1]
		e.more = e.more[:len(e.more)-1]
		return
	}
	if e.n == 1 {
		i--
	}
	e.more = slices.Delete(e.more, i, i+1)
}
