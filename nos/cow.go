package nos

import (
	"maps"
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// A Set's candidate starts as a shallow copy of the running configuration
// that shares every subtree with it. Before each edit, unshare gives the
// candidate its own copy of what the edit can reach: the containers on the
// way to the edited top-level entry (shallow copies), the list's map (a
// copy of its pointers) and the entry itself (a deep copy). Entries the
// Set does not name are never copied, walked or compared, so a Set that
// changes one VRF costs one VRF with ten or ten thousand configured. Nor
// is the list's map copied after the first Set: the map of the
// configuration before the running one is brought up to date with the
// entries the last commit changed and taken instead (cow_reuse.go).

// touched records what the edits of one Set may have changed.
type touched struct {
	all    bool                      // the root was edited: anything may have changed
	lists  [numLists]bool            // any entry of the list may have changed
	keys   [numLists]map[string]bool // these entries of the list may have changed
	tunnel bool                      // the tunnel container may have changed
	maps   listMaps                  // the list maps cand owns, and where they came from (cow_reuse.go)
	acl    aclTouched                // per ACL set, the entries that may have changed (acl_grain.go)
}

// cloneMap copies the map of a top-level list (its pointers, not its
// entries).
func cloneMap(m reflect.Value) reflect.Value {
	switch v := m.Interface().(type) {
	case map[string]*gen.IsthmusAcl_Acl_AclSets_AclSet:
		return reflect.ValueOf(maps.Clone(v))
	case map[string]*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup:
		return reflect.ValueOf(maps.Clone(v))
	case map[string]*gen.IsthmusAcl_Acl_TagKeys_TagKey:
		return reflect.ValueOf(maps.Clone(v))
	case map[string]*gen.IsthmusCni_Cni_Namespaces_Namespace:
		return reflect.ValueOf(maps.Clone(v))
	case map[string]*gen.IsthmusInterfaces_Interfaces_Interface:
		return reflect.ValueOf(maps.Clone(v))
	case map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance:
		return reflect.ValueOf(maps.Clone(v))
	}
	out := reflect.MakeMapWithSize(m.Type(), m.Len())
	iter := m.MapRange()
	for iter.Next() {
		out.SetMapIndex(iter.Key(), iter.Value())
	}
	return out
}

// unshare makes what an edit at p can change cand's own and records it
// in t. p has passed checkWritable.
func unshare(cand *gen.Device, p *gpb.Path, t *touched) {
	if t.all {
		return // everything is cand's own already
	}
	elems := p.GetElem()
	if len(elems) == 0 {
		*cand = *mustCopy(cand)
		t.all = true
		return
	}
	top := elems[0].GetName()
	for i, l := range topLists {
		if len(elems) < len(l.path) || !onPath(elems, l.path) {
			continue
		}
		keys := elems[len(l.path)-1].GetKey()
		name, ok := keys["name"]
		if !ok || len(keys) != 1 {
			break // the whole list: copy it whole below
		}
		if i == listACL {
			unshareACLSet(cand, name, elems[len(l.path):], t) // one entry of a set, not the set (acl_grain.go)
		} else {
			ownEntry(cand, i, name, t)
		}
		if t.keys[i] == nil {
			t.keys[i] = map[string]bool{}
		}
		t.keys[i][name] = true
		return
	}
	// A path above a list entry (/network-instances, /acl) or into a
	// container stored whole (/tunnel): copy the top-level container.
	if f := fieldByPath(reflect.ValueOf(cand), top); f.IsValid() && f.Kind() == reflect.Pointer && !f.IsNil() {
		cp, err := ygot.DeepCopy(f.Interface().(ygot.GoStruct))
		if err != nil {
			// DeepCopy fails only on a malformed generated struct.
			panic("copy configuration: " + err.Error())
		}
		f.Set(reflect.ValueOf(cp))
	}
	for i, l := range topLists {
		if l.path[0] == top {
			t.lists[i] = true
		}
	}
	if top == "tunnel" {
		t.tunnel = true
	}
}

// onPath reports whether elems run along the schema path of a list.
func onPath(elems []*gpb.PathElem, path []string) bool {
	for i, name := range path {
		if elems[i].GetName() != name {
			return false
		}
		if i < len(path)-1 && len(elems[i].GetKey()) > 0 {
			return false
		}
	}
	return true
}

// unshareEntry gives cand its own containers down to list l, its own
// copy of the list's map and a deep copy of the entry name. Containers
// or a map that do not exist yet are created by the edit itself.
func unshareEntry(cand *gen.Device, l topList, name string) {
	for i := range topLists {
		if topLists[i].kind == l.kind {
			ownEntry(cand, i, name, nil)
			return
		}
	}
}

// ownEntry is unshareEntry for the list topLists[list], whose map, when t
// has a spare one to offer, is not copied (t.ownMap, cow_reuse.go).
func ownEntry(cand *gen.Device, list int, name string, t *touched) {
	v := reflect.ValueOf(cand)
	for _, seg := range topLists[list].path {
		f := fieldByPath(v, seg)
		switch f.Kind() {
		case reflect.Pointer:
			if f.IsNil() {
				return
			}
			cp := reflect.New(f.Type().Elem())
			cp.Elem().Set(f.Elem())
			f.Set(cp)
			v = cp
		case reflect.Map:
			if f.IsNil() {
				return
			}
			m := t.ownMap(list, f)
			f.Set(m)
			key := reflect.ValueOf(name)
			if e := m.MapIndex(key); e.IsValid() && !e.IsNil() {
				cp, err := ygot.DeepCopy(e.Interface().(ygot.GoStruct))
				if err != nil {
					panic("copy configuration entry: " + err.Error())
				}
				m.SetMapIndex(key, reflect.ValueOf(cp))
			}
			return
		default:
			return
		}
	}
}
