package nos

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// delta is what a commit changes, at the grain of top-level list entries
// (topLists: a VRF, an interface, an ACL set, a CNI namespace) and the
// tunnel container. Validation, the telemetry diff and the stored
// revision all work on it, so a commit that touches one VRF out of a
// thousand costs about one VRF.
type delta struct {
	changed [numLists][]string // per list: keys of entries added or changed, sorted
	removed [numLists][]string // per list: keys of entries removed, sorted
	tunnel  bool               // the tunnel container changed
	// acl holds, for the ACL sets in changed that both configurations
	// have, which of their entries changed (acl_grain.go); a changed set
	// missing here (one added) is handled whole.
	acl map[string]*aclChange
}

// computeDelta compares every entry of old and cand; a Set knows what it
// touched and uses touchedDelta instead.
func computeDelta(old, cand *gen.Device) delta {
	var d delta
	for i, l := range topLists {
		if i == listACL {
			d.aclSets(old, cand, nil, nil)
			continue
		}
		d.changed[i], d.removed[i] = listDelta(l, old, cand)
	}
	d.tunnel = !reflect.DeepEqual(old.GetTunnel(), cand.GetTunnel())
	return d
}

// listDelta compares every entry of list l in old and cand.
func listDelta(l topList, old, cand *gen.Device) (changed, removed []string) {
	om, cm := l.entries(old), l.entries(cand)
	if cm.IsValid() {
		iter := cm.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			if o := l.entry(old, k); o == nil || !reflect.DeepEqual(o, iter.Value().Interface()) {
				changed = append(changed, k)
			}
		}
	}
	if om.IsValid() {
		iter := om.MapRange()
		for iter.Next() {
			if k := iter.Key().String(); l.entry(cand, k) == nil {
				removed = append(removed, k)
			}
		}
	}
	sort.Strings(changed)
	sort.Strings(removed)
	return changed, removed
}

// touchedDelta compares only what t says the edits touched.
func touchedDelta(old, cand *gen.Device, t *touched) delta {
	if t.all {
		return computeDelta(old, cand)
	}
	var d delta
	for i, l := range topLists {
		if i == listACL {
			switch {
			case t.lists[i]:
				d.aclSets(old, cand, nil, nil)
			case len(t.keys[i]) > 0:
				d.aclSets(old, cand, t.keys[i], t.acl)
			}
			continue
		}
		if t.lists[i] {
			d.changed[i], d.removed[i] = listDelta(l, old, cand)
			continue
		}
		for k := range t.keys[i] {
			o, n := l.entry(old, k), l.entry(cand, k)
			switch {
			case n == nil && o != nil:
				d.removed[i] = append(d.removed[i], k)
			case n != nil && (o == nil || !reflect.DeepEqual(o, n)):
				d.changed[i] = append(d.changed[i], k)
			}
		}
		sort.Strings(d.changed[i])
		sort.Strings(d.removed[i])
	}
	d.tunnel = t.tunnel && !reflect.DeepEqual(old.GetTunnel(), cand.GetTunnel())
	return d
}

// empty reports whether nothing changed.
func (d delta) empty() bool {
	for i := range topLists {
		if len(d.changed[i]) > 0 || len(d.removed[i]) > 0 {
			return false
		}
	}
	return !d.tunnel
}

// reverse returns the delta from cand back to old, given d from old to
// cand.
func (d delta) reverse(old *gen.Device) delta {
	r := delta{tunnel: d.tunnel}
	for i, l := range topLists {
		for _, k := range d.changed[i] {
			if l.entry(old, k) != nil {
				r.changed[i] = append(r.changed[i], k)
			} else {
				r.removed[i] = append(r.removed[i], k)
			}
		}
		r.changed[i] = append(r.changed[i], d.removed[i]...)
		sort.Strings(r.changed[i])
	}
	for k, g := range d.acl {
		if r.acl == nil {
			r.acl = make(map[string]*aclChange, len(d.acl))
		}
		o, _ := topLists[listACL].entry(old, k).(*aclSetT)
		r.acl[k] = g.reverse(o)
	}
	return r
}

// partial returns a device holding only the changed entries of cand (shared,
// not copied), for schema validation of what the commit touches; of an
// ACL set changed entry by entry, only the entries that changed.
func (d delta) partial(cand *gen.Device) *gen.Device {
	p := &gen.Device{}
	for i, l := range topLists {
		if len(d.changed[i]) == 0 {
			continue
		}
		m := reflect.ValueOf(p)
		for _, seg := range l.path {
			f := fieldByPath(m, seg)
			if f.Kind() == reflect.Pointer {
				if f.IsNil() {
					f.Set(reflect.New(f.Type().Elem()))
				}
				m = f
				continue
			}
			f.Set(reflect.MakeMapWithSize(f.Type(), len(d.changed[i])))
			m = f
		}
		src := l.entries(cand)
		for _, k := range d.changed[i] {
			e := src.MapIndex(reflect.ValueOf(k))
			if g := d.acl[k]; i == listACL && g != nil {
				// Only the entries the commit changed (acl_grain.go).
				e = reflect.ValueOf(partialACLSet(e.Interface().(*aclSetT), g))
			}
			m.SetMapIndex(reflect.ValueOf(k), e)
		}
	}
	if d.tunnel {
		p.Tunnel = cand.Tunnel
	}
	return p
}

// encodeEntry returns the compact RFC 7951 encoding of one entry, as the
// store keeps it.
func encodeEntry(s ygot.GoStruct) ([]byte, error) {
	js, err := ygot.EmitJSON(s, &ygot.EmitJSONConfig{Format: ygot.RFC7951, SkipValidation: true})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(js)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
