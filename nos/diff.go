package nos

import (
	"fmt"
	"reflect"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// configDiff returns the leaves that changed between two configurations,
// as ygot.Diff does, but diffs only the top-level list entries that differ:
// a Set that touches one VRF out of a thousand costs one VRF, not a
// thousand. A removed entry becomes one delete of the entry's path.
func configDiff(old, cand *gen.Device) (*gpb.Notification, error) {
	out := &gpb.Notification{}
	var err error
	add := func(prefix []*gpb.PathElem, a, b ygot.GoStruct) {
		if err != nil {
			return
		}
		var n *gpb.Notification
		if n, err = ygot.Diff(a, b); err != nil {
			err = fmt.Errorf("diff %s: %w", pathString(&gpb.Path{Elem: prefix}), err)
			return
		}
		for _, u := range n.GetUpdate() {
			u.Path = &gpb.Path{Elem: append(clonePrefix(prefix), u.GetPath().GetElem()...)}
			out.Update = append(out.Update, u)
		}
		for _, d := range n.GetDelete() {
			out.Delete = append(out.Delete, &gpb.Path{Elem: append(clonePrefix(prefix), d.GetElem()...)})
		}
	}
	diffEntries(NetworkInstances(old), NetworkInstances(cand), "network-instances", "network-instance", "name", out, add)
	diffEntries(Interfaces(old), Interfaces(cand), "interfaces", "interface", "name", out, add)
	diffEntries(aclSets(old), aclSets(cand), "acl/acl-sets", "acl-set", "name", out, add)
	if !reflect.DeepEqual(old.GetTunnel(), cand.GetTunnel()) {
		a, b := old.GetTunnel(), cand.GetTunnel()
		if a == nil {
			a = &gen.IsthmusTunnel_Tunnel{}
		}
		if b == nil {
			b = &gen.IsthmusTunnel_Tunnel{}
		}
		add([]*gpb.PathElem{{Name: "tunnel"}}, a, b)
	}
	return out, err
}

// diffEntries diffs the entries of one top-level list keyed by a string.
func diffEntries[E ygot.GoStruct](old, cand map[string]E, container, list, key string, out *gpb.Notification, add func([]*gpb.PathElem, ygot.GoStruct, ygot.GoStruct)) {
	var parents []*gpb.PathElem
	for _, name := range strings.Split(container, "/") {
		parents = append(parents, &gpb.PathElem{Name: name})
	}
	entryPath := func(k string) []*gpb.PathElem {
		return append(clonePrefix(parents), &gpb.PathElem{Name: list, Key: map[string]string{key: k}})
	}
	for _, k := range sortedKeys(cand) {
		o, had := old[k]
		n := cand[k]
		if had && reflect.DeepEqual(o, n) {
			continue
		}
		var base ygot.GoStruct
		if had {
			base = o
		} else {
			base = reflect.New(reflect.TypeOf(n).Elem()).Interface().(ygot.GoStruct)
		}
		add(entryPath(k), base, n)
	}
	for _, k := range sortedKeys(old) {
		if _, ok := cand[k]; !ok {
			out.Delete = append(out.Delete, &gpb.Path{Elem: entryPath(k)})
		}
	}
}

func aclSets(d *gen.Device) map[string]*gen.IsthmusAcl_Acl_AclSets_AclSet {
	if d.GetAcl().GetAclSets() == nil {
		return nil
	}
	return d.GetAcl().GetAclSets().AclSet
}

func clonePrefix(p []*gpb.PathElem) []*gpb.PathElem {
	return append([]*gpb.PathElem(nil), p...)
}
