package nos

import (
	"reflect"
	"sort"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// topList is one top-level list of the configuration, keyed by a single
// name: the grain at which a commit is computed (delta.go), diffed for
// telemetry (diff.go) and stored (store_entries.go). A commit that
// touches one entry costs one entry, however many the list holds.
type topList struct {
	kind string   // short name; the store key of an entry is kind + "/" + name
	path []string // schema path from the root to the list
}

// Indexes of topLists, for the code that checks one list by name.
const (
	listACL = iota
	listAddressGroup
	listTagKey
	listCNI
	listIf
	listNI
	numLists
)

// topLists are the top-level lists, in the order of the fields of the
// generated structs (the order ygot emits them in).
var topLists = [numLists]topList{
	listACL:          {kind: "acl", path: []string{"acl", "acl-sets", "acl-set"}},
	listAddressGroup: {kind: "ag", path: []string{"acl", "address-groups", "address-group"}},
	listTagKey:       {kind: "tk", path: []string{"acl", "tag-keys", "tag-key"}},
	listCNI:          {kind: "cni", path: []string{"cni", "namespaces", "namespace"}},
	listIf:           {kind: "if", path: []string{"interfaces", "interface"}},
	listNI:           {kind: "ni", path: []string{"network-instances", "network-instance"}},
}

// tunnelKey is the store key of the tunnel container, stored whole.
const tunnelKey = "tunnel"

// entries returns the map of list l in d (invalid when a container on
// the way is missing; a nil map when the list is empty).
func (l topList) entries(d *gen.Device) reflect.Value {
	v := reflect.ValueOf(d)
	for _, name := range l.path {
		if v = fieldByPath(v, name); !v.IsValid() {
			return v
		}
	}
	return v
}

// entry returns the entry name of list l in d, or nil.
func (l topList) entry(d *gen.Device, name string) ygot.GoStruct {
	m := l.entries(d)
	if !m.IsValid() || m.Len() == 0 {
		return nil
	}
	e := m.MapIndex(reflect.ValueOf(name))
	if !e.IsValid() || e.IsNil() {
		return nil
	}
	return e.Interface().(ygot.GoStruct)
}

// keys returns the names of the entries of list l in d, sorted.
func (l topList) keys(d *gen.Device) []string {
	m := l.entries(d)
	if !m.IsValid() {
		return nil
	}
	out := make([]string, 0, m.Len())
	iter := m.MapRange()
	for iter.Next() {
		out = append(out, iter.Key().String())
	}
	sort.Strings(out)
	return out
}

// newEntry returns an empty entry of list l, as the base of a diff.
func (l topList) newEntry() ygot.GoStruct {
	t := reflect.TypeOf(&gen.Device{})
	for _, name := range l.path {
		f, ok := fieldTypeByPath(t, name)
		if !ok {
			panic("nos: no field " + name + " in " + t.String())
		}
		t = f
	}
	return reflect.New(t.Elem().Elem()).Interface().(ygot.GoStruct)
}

// fieldTypeByPath returns the type of the field of struct pointer type t
// whose path tag is name.
func fieldTypeByPath(t reflect.Type, name string) (reflect.Type, bool) {
	s := t.Elem()
	for i := 0; i < s.NumField(); i++ {
		if s.Field(i).Tag.Get("path") == name {
			return s.Field(i).Type, true
		}
	}
	return nil, false
}
