package nos

import (
	"fmt"
	"reflect"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// configDiff returns the leaves that changed between two configurations,
// as ygot.Diff does, but diffs only the top-level entries that ch says
// changed: a Set that touches one VRF out of a thousand costs one VRF, not
// a thousand. A removed entry becomes one delete of the entry's path.
func configDiff(old, cand *gen.Device, ch delta) (*gpb.Notification, error) {
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
	for i, l := range topLists {
		diffEntries(l, old, cand, ch.changed[i], ch.removed[i], ch.acl, out, add)
	}
	if ch.tunnel {
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

// diffEntries diffs the changed entries of one top-level list and
// deletes the removed ones; of an ACL set that acl says changed entry by
// entry, only those entries.
func diffEntries(l topList, old, cand *gen.Device, changed, removed []string, acl map[string]*aclChange, out *gpb.Notification, add func([]*gpb.PathElem, ygot.GoStruct, ygot.GoStruct)) {
	entryPath := func(k string) []*gpb.PathElem {
		var elems []*gpb.PathElem
		for _, name := range l.path[:len(l.path)-1] {
			elems = append(elems, &gpb.PathElem{Name: name})
		}
		return append(elems, &gpb.PathElem{Name: l.path[len(l.path)-1], Key: map[string]string{"name": k}})
	}
	for _, k := range changed {
		base := l.entry(old, k)
		if base == nil {
			base = l.newEntry()
		}
		if a, ok := base.(*gen.IsthmusAcl_Acl_AclSets_AclSet); ok {
			diffACLSet(entryPath(k), a, l.entry(cand, k).(*gen.IsthmusAcl_Acl_AclSets_AclSet), acl[k], add)
			continue
		}
		add(entryPath(k), base, l.entry(cand, k))
	}
	for _, k := range removed {
		out.Delete = append(out.Delete, &gpb.Path{Elem: entryPath(k)})
	}
}

type aclEntryT = gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry

// diffACLSet diffs two versions of an ACL set entry by entry, with the
// same result as ygot.Diff of the whole set: ygot.Diff walks every entry
// of a set by reflection (seconds at 10,000 entries), and a change to a
// set usually touches a few of them. With g (what the commit changed in
// the set, acl_grain.go) only those entries are looked at; without it,
// every entry is compared (those shared by both versions at the cost of
// a pointer comparison).
func diffACLSet(prefix []*gpb.PathElem, a, b *gen.IsthmusAcl_Acl_AclSets_AclSet, g *aclChange, add func([]*gpb.PathElem, ygot.GoStruct, ygot.GoStruct)) {
	if g == nil || g.set {
		add(prefix, withoutEntries(a), withoutEntries(b))
	}
	ea, eb := aclEntryMap(a), aclEntryMap(b)
	entry := func(seq uint32) []*gpb.PathElem {
		return append(clonePrefix(prefix), &gpb.PathElem{Name: "acl-entries"},
			&gpb.PathElem{Name: "acl-entry", Key: map[string]string{"sequence-id": strconv.FormatUint(uint64(seq), 10)}})
	}
	one := func(seq uint32) {
		x, y := ea[seq], eb[seq]
		switch {
		case y == nil && x != nil:
			add(entry(seq), x, &aclEntryT{})
		case y == nil, x == y, x != nil && reflect.DeepEqual(x, y):
		case x == nil:
			add(entry(seq), &aclEntryT{}, y)
		default:
			add(entry(seq), x, y)
		}
	}
	if g != nil {
		for _, seq := range g.changed {
			one(seq)
		}
		for _, seq := range g.removed {
			one(seq)
		}
		return
	}
	for seq := range eb {
		one(seq)
	}
	for seq := range ea {
		if _, ok := eb[seq]; !ok {
			one(seq)
		}
	}
}

func aclSets(d *gen.Device) map[string]*gen.IsthmusAcl_Acl_AclSets_AclSet {
	if d.GetAcl().GetAclSets() == nil {
		return nil
	}
	return d.GetAcl().GetAclSets().AclSet
}

// cniNamespaces returns the namespace to VRF mappings of the CNI daemon.
func cniNamespaces(d *gen.Device) map[string]*gen.IsthmusCni_Cni_Namespaces_Namespace {
	if d.GetCni().GetNamespaces() == nil {
		return nil
	}
	return d.GetCni().GetNamespaces().Namespace
}

func clonePrefix(p []*gpb.PathElem) []*gpb.PathElem {
	return append([]*gpb.PathElem(nil), p...)
}
