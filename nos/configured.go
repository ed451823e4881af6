package nos

import (
	"fmt"
	"reflect"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// implicitEntries are the configurable lists whose entries exist without
// configuration while the list is empty: a BGP neighbor with no afi-safi
// configured runs L3VPN_IPV4_UNICAST, and its state is reported under
// that entry.
var implicitEntries = map[string]bool{
	"/network-instances/network-instance/protocols/protocol/bgp/neighbors/neighbor/afi-safis/afi-safi": true,
}

// checkConfigured refuses a state path that runs through an entry of a
// configurable list (a VRF, an interface, a neighbor, an ACL set, a
// static route) that is neither in the running configuration nor in the
// candidate being applied. Lists that are state only (tunnel endpoints,
// the commit history) need no configuration. c.mu is held.
func (c *Core) checkConfigured(p *gpb.Path) error {
	missing := configuredPrefix(c.schema, c.running, p.GetElem())
	if missing == 0 {
		return nil
	}
	if c.applying != nil && configuredPrefix(c.schema, c.applying, p.GetElem()) == 0 {
		return nil
	}
	return fmt.Errorf("write state %s: %w: %s", pathString(p), ErrNoConfig, pathString(&gpb.Path{Elem: p.GetElem()[:missing]}))
}

// configuredPrefix walks d along elems and returns 0 when every entry of
// a configurable list on the way is in d, or else the length of the path
// to the first one that is not.
func configuredPrefix(root *yang.Entry, d *gen.Device, elems []*gpb.PathElem) int {
	e := root
	v := reflect.ValueOf(d)
	var schemaPath strings.Builder
	for i, el := range elems {
		e = e.Dir[el.GetName()]
		if e == nil || e.ReadOnly() {
			return 0 // not in the schema (the write fails later) or state only from here
		}
		schemaPath.WriteString("/" + el.GetName())
		if !v.IsValid() {
			// Below a missing container: the first list decides.
			if e.IsList() {
				if implicitEntries[schemaPath.String()] {
					return 0
				}
				return i + 1
			}
			continue
		}
		f := fieldByPath(v, el.GetName())
		if !f.IsValid() {
			return 0
		}
		if !e.IsList() {
			if f.Kind() == reflect.Pointer && f.IsNil() {
				v = reflect.Value{}
			} else {
				v = f
			}
			continue
		}
		entry := mapEntry(f, el.GetKey())
		if !entry.IsValid() {
			if implicitEntries[schemaPath.String()] && f.Len() == 0 {
				return 0
			}
			return i + 1
		}
		v = entry
	}
	return 0
}

// fieldByPath returns the field of the struct v points to whose path tag
// is name, or an invalid value.
func fieldByPath(v reflect.Value, name string) reflect.Value {
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}
	}
	s := v.Elem()
	t := s.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("path") == name {
			return s.Field(i)
		}
	}
	return reflect.Value{}
}

// mapEntry returns the entry of the generated list map m whose key leaves
// equal keys, or an invalid value.
func mapEntry(m reflect.Value, keys map[string]string) reflect.Value {
	if m.Kind() != reflect.Map || m.Len() == 0 {
		return reflect.Value{}
	}
	if m.Type().Key().Kind() == reflect.String && len(keys) == 1 {
		for _, k := range keys {
			return m.MapIndex(reflect.ValueOf(k).Convert(m.Type().Key()))
		}
	}
	iter := m.MapRange()
	for iter.Next() {
		kh, ok := iter.Value().Interface().(ygot.KeyHelperGoStruct)
		if !ok {
			continue
		}
		km, err := kh.ΛListKeyMap()
		if err != nil || len(km) != len(keys) {
			continue
		}
		match := true
		for name, want := range keys {
			got, ok := km[name]
			if !ok {
				match = false
				break
			}
			s, err := ygot.KeyValueAsString(got)
			if err != nil || s != want {
				match = false
				break
			}
		}
		if match {
			return iter.Value()
		}
	}
	return reflect.Value{}
}
