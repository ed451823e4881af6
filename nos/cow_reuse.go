package nos

import (
	"reflect"

	"github.com/isthmus-net/isthmus/gen"
)

// A Set's candidate needs its own map of each top-level list it edits:
// the running configuration shares the rest of its entries and must not
// see the edit. Copying the map costs as many pointers as the list has
// entries (10,000 VRFs: 0.3 ms and 0.4 MB of garbage per Set), so the
// core keeps, per list, a spare: the map of a configuration no longer in
// use, with the names in which it differs from the running one's. The
// next Set that edits the list brings the spare up to date with those
// entries only and takes it as the candidate's map. After the commit
// the map it replaced is the spare, differing by the entries the Set
// named; after a failed one the candidate's map is, by the same entries.
//
// A configuration older than the previous running one may thus see its
// list maps change. Nothing holds one that long: a reconciler keeps
// neither configuration after Apply returns, readers use the running
// one under the core's lock only (Read), and the commit history is
// decoded from the store.

// listMaps records what one Set did with the list maps: the map cand
// owns and the one it was made from, per list.
type listMaps struct {
	reuse *mapReuse               // the core's spares; nil: copy every map
	owned [numLists]reflect.Value // the map cand owns
	from  [numLists]reflect.Value // the running configuration's map owned was made from
}

// mapReuse holds the spare map of each top-level list. commitMu guards
// it.
type mapReuse struct {
	lists [numLists]spareMap
}

// spareMap is a map no configuration in use holds, equal to of except
// in the entries named by keys.
type spareMap struct {
	spare reflect.Value
	of    reflect.Value
	keys  []string
}

// ownMap returns a map of list (whose map in cand is f, shared with the
// running configuration or already cand's own) that cand owns: f itself
// when it is, the spare brought up to date when it was made from f, a
// copy of f otherwise. A nil t copies.
func (t *touched) ownMap(list int, f reflect.Value) reflect.Value {
	if t == nil || t.maps.reuse == nil {
		return cloneMap(f)
	}
	f = reflect.ValueOf(f.Interface()) // the map, not cand's field that will hold another
	lm := &t.maps
	if o := lm.owned[list]; o.IsValid() && o.Pointer() == f.Pointer() {
		return f // an earlier edit of this Set took it already
	}
	s := &lm.reuse.lists[list]
	var m reflect.Value
	if s.spare.IsValid() && s.of.IsValid() && s.of.Pointer() == f.Pointer() && s.spare.Pointer() != f.Pointer() {
		m = s.spare
		for _, k := range s.keys {
			key := reflect.ValueOf(k)
			m.SetMapIndex(key, f.MapIndex(key)) // an absent entry (invalid value) deletes
		}
	} else {
		m = cloneMap(f)
	}
	*s = spareMap{} // handed out: no other Set may take it
	lm.owned[list], lm.from[list] = m, f
	return m
}

// settle keeps, after a Set from old to cand whose edits t recorded, the
// map of each list that the configuration no longer running holds as
// the list's spare. running is the configuration running now: cand when
// the Set committed, old otherwise. commitMu is held.
func (r *mapReuse) settle(old, cand, running *gen.Device, t *touched) {
	for i, l := range topLists {
		own, from := t.maps.owned[i], t.maps.from[i]
		if !own.IsValid() {
			continue // the list's spare, if any, still fits the running map
		}
		if t.all || t.lists[i] {
			continue // the list may have been copied whole: its spare is lost
		}
		cur, prev := l.entries(cand), l.entries(old)
		if !cur.IsValid() || cur.Kind() != reflect.Map || cur.IsNil() || cur.Pointer() != own.Pointer() ||
			!prev.IsValid() || prev.Kind() != reflect.Map || prev.IsNil() || prev.Pointer() != from.Pointer() {
			continue // an edit replaced a container on the way: nothing known
		}
		keys := make([]string, 0, len(t.keys[i]))
		for k := range t.keys[i] {
			keys = append(keys, k)
		}
		switch running {
		case cand:
			r.lists[i] = spareMap{spare: from, of: own, keys: keys}
		case old:
			r.lists[i] = spareMap{spare: own, of: from, keys: keys}
		}
	}
}
